"""The main job on an embedded default: a demo vault made from generated photos.

``workbench demo`` (and ``make demo``) builds ``DIR/vault`` from generated,
obviously fake patients with consent records of every kind, then shows what a
query for each purpose returns and why the rest is excluded. Nothing here is
real patient data.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from . import _synth
from .errors import AlreadyExists
from .vault import SCOPES, init_vault, open_vault

MARKER = ".workbench-demo"
ADMIN = "demo"
#: every demo user's passphrase, unless WORKBENCH_PASSPHRASE names another (it
#: meets the strength rule for new passphrases, as any passphrase must)
DEFAULT_PASSPHRASE = "demo-vault-passphrase"

# (consent story, grants as (scopes, expired?), scopes withdrawn later)
STORIES = [
    ("research only", [("care,research", False)], None),
    ("teaching only", [("care,education", False)], None),
    ("research, teaching and publication", [("care,research,education,publication", False)], None),
    ("research, then withdrawn", [("care,research", False)], "research"),
    ("research consent expired", [("care", False), ("research,education", True)], None),
    ("no consent on record (care only)", [], None),
]
BODY_SITES = ["forearm", "hand", "knee", "back", "face", "shin", "abdomen"]
DIAGNOSES = ["L40.0", "C43.5", "L89.1", "T20.2", "D22.5"]
#: where each diagnosis may be (C43.5 and D22.5 are "of trunk", T20.2 "of head
#: and neck"; pressure ulcers lie over bone), so that a photo's code and site agree
DIAGNOSIS_SITES = {
    "L40.0": BODY_SITES,
    "C43.5": ["back", "abdomen"],
    "L89.1": ["back", "heel"],
    "T20.2": ["face"],
    "D22.5": ["back", "abdomen"],
}
#: sites with no left or right
MIDLINE = {"back", "abdomen", "face"}
#: the reason the demo's analyst gives for the photos they reject
REJECT_REASON = "redaction covers part of the finding"
#: the photo (in ingest order; a research-only patient's) that carries a tattoo
#: no detector finds: the demo's analyst leaves it for a person to mark in review
TATTOO_PHOTO = 6


def tattoo_box(width: int, height: int) -> tuple[int, int, int, int]:
    """Where the demo's tattoo is, ``(x, y, w, h)`` in the photo's pixels (see :data:`TATTOO_PHOTO`)."""
    side = max(8, round(min(width, height) * 0.18))
    return round(width * 0.62), round(height * 0.55), side, side


def build_demo_vault(workdir: Path, *, photos: int = 24, seed: int = 2026,
                     passphrase: str | None = None, width: int = 1600, height: int = 1067,
                     out=sys.stdout) -> Path:
    """Create ``workdir/vault`` with generated photos; return its path.

    A previous demo vault in the same place (recognised by its marker file) is
    replaced; any other existing folder is refused.
    """
    passphrase = passphrase or os.environ.get("WORKBENCH_PASSPHRASE") or DEFAULT_PASSPHRASE
    path = Path(workdir) / "vault"
    if path.exists():
        if not (path / MARKER).exists():
            raise AlreadyExists(
                "the demo folder holds a vault that the demo did not make; choose another "
                "--workdir", path=str(path))
        shutil.rmtree(path)
    rng = np.random.default_rng(seed)
    today = datetime.now(timezone.utc)
    with init_vault(path, admin=ADMIN, passphrase=passphrase) as vault:
        (path / MARKER).write_text("made by `workbench demo`; safe to delete\n")
        for user, role in (("photo", "photographer"), ("analyst", "analyst"),
                           ("research", "researcher"), ("teach", "educator")):
            vault.add_user(user, role, passphrase)
        identities = [_synth.fake_identity(rng) for _ in STORIES]
        for identity, (_, grants, withdrawn) in zip(identities, STORIES):
            for scopes, expired in grants:
                expires = (today - timedelta(days=30)).date() if expired else None
                vault.add_consent(identity.mrn, scopes, expires=expires, name=identity.name,
                                  birth_date=identity.birth_date,
                                  effective=today - timedelta(days=400))
            if withdrawn:
                vault.withdraw_consent(identity.mrn, withdrawn, effective=today - timedelta(days=10))
        for n in range(photos):
            story = n % len(STORIES)
            identity = identities[story]
            tattoo = tattoo_box(width, height) if n == TATTOO_PHOTO else None
            data, _ = _synth.synth_photo(rng, identity=identity, width=width, height=height, tattoo=tattoo)
            # drawn in the same order as always, so the generated photos stay the same
            site = str(rng.choice(BODY_SITES))
            side = [None, "left", "right"][int(rng.integers(0, 3))]
            diagnosis = str(rng.choice(DIAGNOSES))
            sites = DIAGNOSIS_SITES[diagnosis]
            if site not in sites:
                site = sites[BODY_SITES.index(site) % len(sites)]
            vault.add_photo(
                data, patient=identity.mrn, body_site=site, laterality=None if site in MIDLINE else side,
                diagnosis=diagnosis, original_name=f"IMG_{n + 1:04d}.JPG",
                allow_no_consent=not STORIES[story][1],
            )
        vault.render_previews()  # ingest leaves JPEG previews for the first reader
    return path


def review_demo_photos(path: Path, passphrase: str, *, workers: int = 2) -> dict:
    """As the demo's analyst: de-identify every photo and review the results.

    Photos whose automatic redaction verified are approved, the others
    rejected; a photo with a weak face or text box (``deid.review_reasons``:
    it may hide the lesion) is left for a person. So that the cohort and teaching builds show every exclusion
    reason, each build's first candidate is left unreviewed and its second
    rejected (with :data:`REJECT_REASON`), when it has three or more. The photo with
    a tattoo (:data:`TATTOO_PHOTO`) is left unreviewed too: no detector finds
    it, so its automatic redaction verifies, but a person must mark it.
    """
    from ._progress import progress_bar
    from .cohort import prepare_derivatives
    from .deid import review_reasons

    with open_vault(path, user="analyst", passphrase=passphrase) as vault:
        ids = list(vault.photos("care").sort_values("ingested")["photo_id"])
        results = prepare_derivatives(vault, ids, purpose="care", workers=workers).set_index("photo_id")
        held: dict[str, str] = {}
        if len(ids) > TATTOO_PHOTO:
            held[ids[TATTOO_PHOTO]] = "unreviewed"
        for purpose in ("research", "education"):
            candidates = [p for p in vault.photos(purpose).sort_values("ingested")["photo_id"] if p not in held]
            if len(candidates) >= 3:
                held[candidates[0]], held[candidates[1]] = "unreviewed", "rejected"
        counts = {"approved": 0, "rejected": 0, "unreviewed": 0}
        for photo_id in progress_bar(ids, desc="review"):
            verified = bool(results.loc[photo_id, "verified"])
            state = held.get(photo_id, "approved" if verified else "rejected")
            if state == "approved" and review_reasons(results.loc[photo_id, "regions"], results.loc[photo_id, "warnings"]):
                state = "unreviewed"  # a weak box may hide the finding: a person decides
            if state == "unreviewed":
                continue  # left for a person to review
            reason = None if state == "approved" else REJECT_REASON if verified else "redaction not verified"
            vault.set_review_state(photo_id, state, reason=reason)
            counts[state] += 1
        counts["unreviewed"] = len(ids) - counts["approved"] - counts["rejected"]
        counts["verified"] = int(results["verified"].sum())
    return counts


def run_demo(workdir: Path, *, photos: int = 24, out=sys.stdout) -> int:
    """Build the demo vault, review it, build a cohort and a teaching set through papermill."""
    passphrase = os.environ.get("WORKBENCH_PASSPHRASE") or DEFAULT_PASSPHRASE
    source = "WORKBENCH_PASSPHRASE" if os.environ.get("WORKBENCH_PASSPHRASE") else f"the default {DEFAULT_PASSPHRASE!r}"
    started = time.perf_counter()
    path = build_demo_vault(workdir, photos=photos, passphrase=passphrase, out=out)
    elapsed = time.perf_counter() - started
    print(f"Built demo vault {path} with {photos} generated photos in {elapsed:.1f} s.", file=out)
    print(f"Users: demo (admin), photo, analyst, research, teach; passphrase from {source}.", file=out)
    print("Patient stories (all identities are generated and fake):", file=out)
    for story, _, _ in STORIES:
        print(f"  - {story}", file=out)
    with open_vault(path, user="research", passphrase=passphrase) as vault:
        print("\nWhat a query for each purpose returns now:", file=out)
        total = vault.photo_count()
        for purpose in SCOPES:
            frame = vault.photos(purpose)
            reasons = vault.exclusions(purpose)["reason"].value_counts()
            why = ", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none excluded"
            print(f"  {purpose:<12} {len(frame):>3} of {total} photos ({why})", file=out)
        research = vault.photos("research")
        print("\nResearch cohort candidates (no identifiers):", file=out)
        columns = ["photo_id", "patient_ref", "body_site", "laterality", "diagnosis", "capture_date"]
        shown = research[columns].astype(object)
        print(shown.where(shown.notna(), "").to_string(index=False), file=out)  # empty, not NaN
        check = vault.verify_audit()
        print(f"\nAudit chain: {check.reason}, {check.records} records.", file=out)
    started = time.perf_counter()
    counts = review_demo_photos(path, passphrase)
    print(f"\nAnalyst review: every photo de-identified in {time.perf_counter() - started:.1f} s; "
          f"{counts['verified']} verified automatically; {counts['approved']} approved, "
          f"{counts['rejected']} rejected, {counts['unreviewed']} left unreviewed.", file=out)
    from .runs import run_cohort_notebook

    datasets = Path(workdir).resolve() / "datasets"
    for name, user, notebook in (("demo-cohort", "research", "30_build_cohort"),
                                 ("demo-teaching", "teach", "40_teaching_set")):
        target = datasets / name
        if target.exists():
            shutil.rmtree(target)  # the demo's own output from an earlier run
        from .vault import capability

        # the kernel opens the vault with a capability that ends with the run
        with open_vault(path, user=user, passphrase=passphrase) as vault, capability(vault):
            built = run_cohort_notebook(notebook, {"name": name, "vault_path": str(path.resolve()),
                                                   "user": user}, target)
        from .cohort import read_cohort

        prov, manifest = read_cohort(built)
        why = ", ".join(f"{n} {r}" for r, n in prov["excluded"].items()) or "nothing"
        print(f"\nBuilt {built} as {user} ({notebook} through papermill): {len(manifest)} images; "
              f"excluded: {why}.", file=out)
    print(f"\nLook at: {datasets / 'demo-cohort' / 'DATACARD.md'}, "
          f"{datasets / 'demo-teaching' / 'gallery.html'} and {datasets / 'demo-teaching' / 'deck.pptx'}.",
          file=out)
    print(f"Next: WORKBENCH_PASSPHRASE={passphrase} .venv/bin/workbench --vault {path} "
          "--user demo photos --purpose education", file=out)
    return 0
