"""Reproducible de-identified cohorts: prepare derivatives, select, write, record.

A cohort folder holds only photos consented for its purpose at build time,
nothing identifying, and a full record of how it was made::

    datasets/<name>/
        images/            IM-<pseudonym>.jpg|png, the de-identified files
        manifest.csv       one row per image (pseudonymous ids, shifted dates, ...)
        manifest.parquet   the same table
        provenance.json    spec, run id, versions, model digests, vault and consent digests
        DATACARD.md        what it is, for a human reader

Built twice from the same vault state and spec, images and manifests are
byte-identical; provenance differs only in run id and timestamps.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import __version__, _imageio
from ._progress import progress_bar
from .deid import Policy, Pseudonyms, review_reasons
from .deid._pipeline import DISMISSED_MARK, DeidResult, deidentify
from .deid._regions import SLOUGH_MARK
from .errors import AlreadyExists, ConsentError, InvalidInput, NotFound
from .vault import Vault

COHORT_PURPOSES = ("research", "education", "publication")
MANIFEST_COLUMNS = [
    "image", "image_id", "patient_id", "capture_date", "body_site", "laterality",
    "diagnosis", "width", "height", "sha256",
]
PACKAGES = ["workbench", "numpy", "pandas", "pillow", "opencv-python-headless", "cryptography",
            "sqlcipher3", "rapidocr", "onnxruntime", "zxing-cpp", "pydicom", "jpeglib", "papermill"]


@dataclass(frozen=True)
class CohortSpec:
    """What a cohort is made of.

    Attributes
    ----------
    name : str
        Folder name under ``datasets/``: letters, digits, ``-`` and ``_``.
    purpose : str
        ``research``, ``education`` or ``publication``: only photos consented
        for it at build time are used.
    filters : dict
        As ``Vault.photos`` filters: ``{"body_site": "forearm",
        "capture_date": ["2024-01-01", "2024-12-31"]}`` (a two-item list is a range).
    sample_size : int, optional
        Draw this many photos (seeded, optionally stratified) from those eligible.
    seed : int
        Seed of the draw.
    stratify : str, optional
        Column to stratify the draw by (proportional allocation).
    include_unreviewed : bool
        By default only photos approved in review are used; with this, photos
        not yet reviewed are used when their automatic redaction verified.
    pseudonym_domain : str, optional
        Pseudonyms are per cohort unless two cohorts name the same domain, so
        that two cohorts cannot be linked by accident.
    policy : dict
        De-identification policy fields (see ``workbench.deid.Policy``).
    """

    name: str
    purpose: str = "research"
    filters: dict = field(default_factory=dict)
    sample_size: int | None = None
    seed: int = 0
    stratify: str | None = None
    include_unreviewed: bool = False
    pseudonym_domain: str | None = None
    policy: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.name or not all(c.isalnum() or c in "-_" for c in self.name):
            raise InvalidInput("a cohort name uses letters, digits, '-' and '_' only")
        if self.purpose not in COHORT_PURPOSES:
            raise ConsentError(f"a cohort's purpose is one of: {', '.join(COHORT_PURPOSES)}")
        if self.sample_size is not None and int(self.sample_size) < 1:
            raise InvalidInput("sample_size must be a positive number")
        self.deid_policy()  # validate early

    def deid_policy(self) -> Policy:
        fields = dict(self.policy)
        for key in ("detectors", "allow_text", "fill", "date_shift_days"):
            if key in fields and isinstance(fields[key], list):
                fields[key] = tuple(fields[key])
        return Policy(**fields)

    def domain(self) -> str:
        return self.pseudonym_domain or f"cohort:{self.name}"

    def query_filters(self) -> dict:
        return {k: tuple(v) if isinstance(v, list) and len(v) == 2 and k == "capture_date" else v
                for k, v in self.filters.items()}

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> "CohortSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(doc) - known
        if unknown:
            raise InvalidInput(f"unknown cohort spec fields: {', '.join(sorted(unknown))}")
        return cls(**doc)


def policy_digest(policy: Policy, regions: list[dict] | None = None) -> str:
    """A digest naming a policy, so that derivatives made under another one are redone.

    With ``regions`` (the regions a person marked on one photo, see
    ``Vault.manual_regions``) it names the policy and those regions: a
    derivative made before a reviewer added, moved or dismissed a region is
    redone.
    """
    doc = policy.to_json()
    if regions:
        # a dismissal is its own entry; plain regions keep the digests they had
        doc = {"policy": doc, "regions": sorted(
            [r["kind"], list(r["box"])] + (["dismissed"] if r.get("dismissed") else []) for r in regions)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _expected_digests(vault: Vault, photo_ids: list[str], policy: Policy,
                      extra: dict[str, list[dict]] | None = None) -> tuple[dict[str, str], dict[str, list[dict]]]:
    """Per photo: the digest its derivative must carry, and the regions people marked on it."""
    regions = vault.manual_regions(photo_ids)
    for photo_id, more in (extra or {}).items():
        regions[photo_id] = list(regions.get(photo_id, [])) + list(more)
    return {p: policy_digest(policy, regions.get(p)) for p in photo_ids}, regions


# --- preparing derivatives (roles that may read originals) ---------------------


def _worker_init() -> None:
    """One thread per worker process: N workers use N cores without oversubscribing."""
    os.environ["WORKBENCH_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _deid_task(data: bytes, policy: Policy, regions: list[dict]) -> DeidResult:
    # Runs in a worker: it gets pixels (file bytes) and a policy, never a key.
    return deidentify(data, policy, regions=regions)


def prepare_derivatives(
    vault: Vault,
    photo_ids: Iterable[str],
    policy: Policy | None = None,
    *,
    purpose: str,
    workers: int = 2,
    scheduler: str | None = None,
    manual_regions: dict[str, list[dict]] | None = None,
) -> pd.DataFrame:
    """De-identify photos that have no derivative under ``policy`` yet, in parallel.

    The vault (and its keys) stay in this process: it decrypts each original
    in memory and ships only the file bytes and the policy to the workers
    (``workers`` single-threaded processes, 0 for this process alone, or a
    Dask cluster when ``scheduler`` is an address such as
    ``"tcp://10.0.0.5:8786"`` or a ``distributed.Client``); results come back
    in memory and are encrypted here.

    ``purpose`` is the use the derivatives are made for: photos whose
    consent for it does not hold now are neither made nor returned.

    The regions people marked in review (``Vault.manual_regions``) are
    always hidden, with ``manual_regions`` added to them; a derivative made
    before they changed is made again.

    Returns
    -------
    pandas.DataFrame
        ``vault.deid_results`` for the photos named.
    """
    policy = policy or Policy()
    photo_ids = list(photo_ids)
    digests, regions = _expected_digests(vault, photo_ids, policy, manual_regions)
    done = vault.deid_results(photo_ids, purpose=purpose)
    current = {p for p, d in zip(done["photo_id"], done["policy_digest"]) if digests.get(p) == d}
    allowed = set(vault.photos(purpose)["photo_id"])
    todo = [p for p in photo_ids if p not in current and p in allowed]
    if todo:
        results = _run_parallel(vault, todo, policy, workers, scheduler, regions, purpose)
        for photo_id, result in progress_bar(zip(todo, results), total=len(todo), desc="de-identify"):
            vault.store_deid(photo_id, result, digests[photo_id])
    return vault.deid_results(photo_ids, purpose=purpose)


def load_deidentified_previews(vault: Vault, purpose: str, *, limit: int = 8,
                               max_side: int = 256) -> dict[str, bytes]:
    """Small JPEGs of de-identified photos that a cohort for ``purpose`` could use now.

    Only photos consented for ``purpose``, approved in review and whose latest
    derivative verified are shown, as a build would choose them: a rejected or
    unverified derivative may still show an identifier. Nothing here reads an
    original, so a notebook may keep these in its saved outputs.

    Parameters
    ----------
    vault : Vault
        Opened by a role that may read derivatives (researcher, educator,
        analyst, clinician, admin).
    purpose : str
        ``research``, ``education``, ``publication`` or ``care``.
    limit : int, default 8
        At most this many, in photo id order.
    max_side : int, default 256
        Longest side of each preview in pixels.

    Returns
    -------
    dict
        Photo id -> JPEG bytes (pixels only, no metadata).

    Raises
    ------
    AccessDenied
        The role has no derivatives key (photographer): raised even when no
        photo qualifies, so the answer does not depend on the vault's state.
    """
    vault._need("derivatives", "view de-identified previews")  # audited when refused
    eligible = vault.photos(purpose)
    approved = eligible.loc[eligible["review_state"] == "approved", "photo_id"]
    results = vault.deid_results(approved, purpose=purpose)
    results = results[results["verified"]].sort_values("photo_id").head(limit)
    return {
        photo_id: _imageio.render_preview(vault.load_derivative(blob_id, purpose=purpose), max_side)[0]
        for photo_id, blob_id in zip(results["photo_id"], results["blob_id"])
    }


def _run_parallel(vault, todo, policy, workers, scheduler, manual_regions, purpose):
    def payload(photo_id):
        return vault._read_pixels_file(photo_id, "de-identify photos", purpose), manual_regions.get(photo_id, [])

    if scheduler is not None:
        from distributed import Client

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            client.run(_worker_init)
            futures = []
            for photo_id in todo:
                data, regions = payload(photo_id)
                futures.append(client.submit(_deid_task, data, policy, regions, pure=False))
            for future in futures:
                yield future.result()
        finally:
            if client is not scheduler:
                client.close()
        return
    if workers <= 0:
        # in this process (debugging, tests): the detectors use their default threads
        for photo_id in todo:
            data, regions = payload(photo_id)
            yield _deid_task(data, policy, regions)
        return
    # "spawn", not fork: the parent may already run onnxruntime/OpenCV thread
    # pools, and a forked child can inherit one of their locks held and hang.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, mp_context=context) as pool:
        # A bounded window keeps only a few decrypted originals in flight.
        window: list = []
        for photo_id in todo:
            data, regions = payload(photo_id)
            window.append(pool.submit(_deid_task, data, policy, regions))
            if len(window) >= 2 * workers:
                yield window.pop(0).result()
        for future in window:
            yield future.result()


# --- building ---------------------------------------------------------------


@dataclass
class CohortResult:
    """What a build produced and left out."""

    path: Path
    images: int
    excluded: dict[str, int]
    run_id: str

    @property
    def headline(self) -> str:
        """``cohort NAME: 8 images written; 10 left out: 6 no consent, 4 unreviewed``."""
        left = sum(self.excluded.values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(self.excluded.items()))
        return f"cohort {self.path.name}: {self.images} images written; {left} left out" + (f": {why}" if why else "")

    @property
    def warning(self) -> str | None:
        """What is wrong with the result (an empty cohort), or None."""
        if self.images:
            return None
        return "the cohort is empty; see why above, and check its filters and review states"

    def summary(self) -> str:
        """:attr:`headline`, and the :attr:`warning` on a line of its own when there is one."""
        return self.headline + (f"\nwarning: {self.warning}" if self.warning else "")


def _select(vault: Vault, spec: CohortSpec, policy: Policy, *, workers: int, scheduler) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    filters = spec.query_filters()
    eligible = vault.photos(spec.purpose, **filters)
    excluded: dict[str, int] = {}
    for reason, count in vault.exclusions(spec.purpose, **filters)["reason"].value_counts().items():
        excluded[str(reason)] = int(count)

    def drop(mask, reason):
        nonlocal eligible
        n = int(mask.sum())
        if n:
            excluded[reason] = excluded.get(reason, 0) + n
        eligible = eligible[~mask]

    drop(eligible["review_state"] == "rejected", "rejected in review")
    if not spec.include_unreviewed:
        drop(eligible["review_state"] != "approved", "unreviewed")
    ids = list(eligible["photo_id"])
    if vault._keys.has("originals") and ids:
        results = prepare_derivatives(vault, ids, policy, purpose=spec.purpose, workers=workers,
                                      scheduler=scheduler)
    else:
        results = vault.deid_results(ids, purpose=spec.purpose)
    # a derivative made under another policy, or before a reviewer changed
    # the regions marked on the photo, is not this cohort's
    digests, _ = _expected_digests(vault, ids, policy)
    current = np.array([digests.get(p) == d for p, d in zip(results["photo_id"], results["policy_digest"])], bool)
    results = results.loc[current]
    have = set(results["photo_id"])
    drop(~eligible["photo_id"].isin(have), "not de-identified yet")
    verified = set(results.loc[results["verified"], "photo_id"])
    drop(~eligible["photo_id"].isin(verified), "not verified")
    if spec.include_unreviewed:
        # A weak face or text box may hide the finding: only a person's approval lets it in.
        weak = {p for p, regions, warnings in zip(results["photo_id"], results["regions"], results["warnings"])
                if review_reasons(regions, warnings)}
        drop(eligible["photo_id"].isin(weak) & (eligible["review_state"] != "approved"),
             "needs review (weak face or text box)")
    eligible = eligible.sort_values("photo_id").reset_index(drop=True)
    if spec.sample_size is not None and len(eligible) > spec.sample_size:
        chosen = _sample(eligible, int(spec.sample_size), spec.seed, spec.stratify)
        excluded["not drawn in the sample"] = len(eligible) - len(chosen)
        eligible = chosen
    return eligible, excluded, results.set_index("photo_id")


def _sample(frame: pd.DataFrame, n: int, seed: int, stratify: str | None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    if not stratify:
        picks = np.sort(rng.choice(len(frame), size=n, replace=False))
        return frame.iloc[picks].reset_index(drop=True)
    if stratify not in frame.columns:
        raise InvalidInput(f"cannot stratify by {stratify!r}; use a photo column such as body_site")
    groups = frame.groupby(frame[stratify].fillna("(none)"), sort=True)
    sizes = {key: len(g) for key, g in groups}
    total = sum(sizes.values())
    quota = {key: int(n * size // total) for key, size in sizes.items()}
    # hand out what rounding left over, largest remainders first (stable by key)
    left = n - sum(quota.values())
    for key in sorted(sizes, key=lambda k: (-(n * sizes[k] % total), str(k)))[:left]:
        quota[key] += 1
    parts = []
    for key, group in groups:
        k = min(quota[key], len(group))
        picks = np.sort(rng.choice(len(group), size=k, replace=False))
        parts.append(group.iloc[picks])
    return pd.concat(parts).sort_values("photo_id").reset_index(drop=True)


def build_cohort(
    vault: Vault,
    spec: CohortSpec | dict,
    out_dir: str | os.PathLike | None = None,
    *,
    workers: int = 2,
    scheduler=None,
    notebook: str | os.PathLike | None = None,
    supersedes: dict | None = None,
) -> CohortResult:
    """Build a de-identified cohort folder from a vault.

    Parameters
    ----------
    vault : Vault
        Opened by a user whose role may read derivatives (researcher,
        educator, analyst, clinician, admin). Roles that may read originals
        also de-identify photos that lack a derivative under the spec's
        policy; others use what exists.
    spec : CohortSpec or dict
    out_dir : path, optional
        Default ``datasets/<name>``; must not exist.
    workers, scheduler
        Parallel de-identification (see :func:`prepare_derivatives`).
    notebook : path, optional
        An executed notebook to keep in the folder (papermill builds).
    supersedes : dict, optional
        For rebuilds: the earlier cohort's run id and why it was rebuilt.

    Returns
    -------
    CohortResult
    """
    if isinstance(spec, dict):
        spec = CohortSpec.from_json(spec)
    out = Path(out_dir) if out_dir is not None else Path("datasets") / spec.name
    if out.exists() and any(out.iterdir()):
        raise AlreadyExists(
            "that cohort folder exists already; choose another name or --out, or use "
            "`workbench cohort rebuild` for a new version", path=str(out))
    policy = spec.deid_policy()
    started = datetime.now(timezone.utc)
    chosen, excluded, results = _select(vault, spec, policy, workers=workers, scheduler=scheduler)
    pseudonyms = Pseudonyms(vault._keys.get("pseudonym", "build cohorts"), domain=spec.domain(),
                            date_shift_days=policy.date_shift_days)
    tmp = out.with_name(f".{out.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    rows, per_photo = [], []
    approvals = vault._reviewers()
    for photo in progress_bar(chosen.itertuples(index=False), total=len(chosen), desc="write cohort",
                              unit="image"):
        result = results.loc[photo.photo_id]
        data = vault.load_derivative(result["blob_id"], purpose=spec.purpose)
        image_id = pseudonyms.photo(photo.photo_id)
        name = f"{image_id}.{result['ext']}"
        (tmp / "images" / name).write_bytes(data)
        shifted = None
        if isinstance(photo.capture_date, str) and photo.capture_date:
            shifted = pseudonyms.shift(date.fromisoformat(photo.capture_date), photo.patient_ref).isoformat()
        rows.append({
            "image": f"images/{name}", "image_id": image_id,
            "patient_id": pseudonyms.patient(photo.patient_ref), "capture_date": shifted,
            "body_site": photo.body_site, "laterality": photo.laterality, "diagnosis": photo.diagnosis,
            "width": int(result["width"]), "height": int(result["height"]),
            "sha256": hashlib.sha256(data).hexdigest(),
        })
        counts: dict[str, int] = {}
        for region in result["regions"]:
            counts[region["kind"]] = counts.get(region["kind"], 0) + 1
        approved_by, approved = approvals.get(photo.photo_id, (None, None))
        per_photo.append({"image_id": image_id, "review_state": photo.review_state,
                          "approved_by": approved_by, "approved": approved,
                          "verified": bool(result["verified"]), "regions": counts,
                          "left_visible": sum(DISMISSED_MARK in w or SLOUGH_MARK in w for w in result["warnings"])})
    manifest = pd.DataFrame.from_records(rows, columns=MANIFEST_COLUMNS).sort_values("image_id")
    manifest = manifest.reset_index(drop=True)
    _write_manifest(tmp, manifest)
    per_photo.sort(key=lambda p: p["image_id"])
    run_id = uuid.uuid4().hex
    provenance = {
        "cohort": spec.name,
        "run_id": run_id,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "built_by_role": vault.role,
        "spec": spec.to_json(),
        "policy": policy.to_json(),
        "policy_digest": policy_digest(policy),
        "code_version": _code_version(),
        "packages": _package_versions(),
        "python": platform.python_version(),
        "models": _model_digests(policy),
        "vault_state_digest": _vault_digest(results, chosen),
        "consent_state_digest": vault.consent_digest(),
        "consent_evaluated_at": vault.now().isoformat(timespec="seconds"),
        "images": len(manifest),
        "excluded": dict(sorted(excluded.items())),
        "photos": per_photo,
        "manifest_sha256": hashlib.sha256((tmp / "manifest.csv").read_bytes()).hexdigest(),
    }
    if supersedes:
        provenance["supersedes"] = supersedes
    (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    (tmp / "DATACARD.md").write_text(_datacard(spec, provenance, manifest))
    if notebook is not None:
        shutil.copyfile(notebook, tmp / Path(notebook).name)
    if out.exists():
        out.rmdir()
    tmp.rename(out)
    # the manifest's digest and the patients' random refs (never identifiers)
    # let a share or bundle be checked against this signed record later, by
    # the share portal too, which holds no key to the pseudonyms
    vault._record("cohort_build", {"cohort": spec.name, "run_id": run_id, "images": len(manifest),
                                   "purpose": spec.purpose, "excluded": dict(sorted(excluded.items())),
                                   "manifest_sha256": provenance["manifest_sha256"],
                                   "datacard_sha256": hashlib.sha256((out / "DATACARD.md").read_bytes()).hexdigest(),
                                   "patient_refs": sorted(set(chosen["patient_ref"])),
                                   # a share of the run this one replaces follows it (workbench.share)
                                   **({"supersedes": supersedes["run_id"]} if supersedes else {})})
    return CohortResult(out, len(manifest), dict(sorted(excluded.items())), run_id)


def _write_manifest(folder: Path, manifest: pd.DataFrame) -> None:
    manifest.to_csv(folder / "manifest.csv", index=False, lineterminator="\n")
    # pandas' parquet writer is deterministic for the same versions and data
    manifest.to_parquet(folder / "manifest.parquet", index=False, compression="snappy")


def _vault_digest(results: pd.DataFrame, chosen: pd.DataFrame) -> str:
    state = sorted(
        (pid, str(results.loc[pid, "blob_id"]), str(review))
        for pid, review in zip(chosen["photo_id"], chosen["review_state"])
    )
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _code_version() -> dict:
    version = {"workbench": __version__}
    try:
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5)
        if commit.returncode == 0:
            version["git_commit"] = commit.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def _version_text(version: dict) -> str:
    """``workbench 0.1.0 (git 19ea083c1f2a)`` from :func:`_code_version`'s record."""
    commit = version.get("git_commit")
    return f"workbench {version.get('workbench')}" + (f" (git {commit[:12]})" if commit else "")


def _package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _model_digests(policy: Policy) -> dict:
    if not policy.detectors:
        return {}
    from .deid._detect import model_digests

    return model_digests()


def _datacard(spec: CohortSpec, prov: dict, manifest: pd.DataFrame) -> str:
    lines = [
        f"# Cohort `{spec.name}`",
        "",
        f"De-identified photographs for **{spec.purpose}**, built {prov['finished']} "
        f"(run `{prov['run_id']}`).",
        "",
        "## Contents",
        "",
        f"- {prov['images']} images in `images/`, listed in `manifest.csv` / `manifest.parquet`.",
        "- Image and patient ids are keyed pseudonyms valid only in this cohort's pseudonym "
        f"domain (`{spec.domain()}`); capture dates are shifted per patient (intervals kept).",
        "- Every image was rebuilt from pixels (no metadata), its faces, text and barcodes "
        "redacted, and verified again before it was written.",
        "",
        "## Selection",
        "",
        f"- Purpose: {spec.purpose}; consent evaluated at {prov['consent_evaluated_at']}.",
        f"- Filters: `{json.dumps(spec.filters, sort_keys=True)}`",
        f"- Sample: {spec.sample_size or 'all'} (seed {spec.seed}, stratified by {spec.stratify or 'nothing'}).",
        f"- Unreviewed photos: {'included when verified' if spec.include_unreviewed else 'excluded'}.",
        "",
        "Excluded:",
        "",
    ]
    lines += [f"- {reason}: {n}" for reason, n in prov["excluded"].items()] or ["- nothing"]
    if len(manifest):
        lines += ["", "## Breakdown", "", "| body site | images |", "|---|---|"]
        for site, n in manifest["body_site"].fillna("(none)").value_counts().sort_index().items():
            lines.append(f"| {site} | {n} |")
    lines += ["", "## Provenance", "",
              f"Code {_version_text(prov['code_version'])}, policy digest `{prov['policy_digest']}`, "
              f"vault state `{prov['vault_state_digest'][:16]}`, consent state "
              f"`{prov['consent_state_digest'][:16]}`. See `provenance.json`.", ""]
    return "\n".join(lines)


# --- after a withdrawal --------------------------------------------------------


def read_cohort(path: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """A cohort folder's provenance and manifest."""
    path = Path(path)
    try:
        provenance = json.loads((path / "provenance.json").read_text("utf-8"))
        manifest = pd.read_csv(path / "manifest.csv", dtype=str)
    except (OSError, ValueError):
        raise NotFound("that folder is not a cohort (no provenance.json / manifest.csv)", path=str(path)) from None
    return provenance, manifest


def check_cohort(vault: Vault, path: str | os.PathLike) -> pd.DataFrame:
    """Patients in a cohort whose consent for its purpose is no longer active.

    Returns a DataFrame (patient_id pseudonym, images, reason); empty when
    the cohort is still fully consented.
    """
    provenance, manifest = read_cohort(path)
    spec = CohortSpec.from_json(provenance["spec"])
    pseudonyms = Pseudonyms(vault._keys.get("pseudonym", "check cohorts"), domain=spec.domain())
    status = vault.exclusions(spec.purpose)
    lost = {pseudonyms.patient(ref): reason for ref, reason in zip(status["patient_ref"], status["reason"])}
    counts = manifest["patient_id"].value_counts()
    rows = [(pid, int(counts[pid]), lost[pid]) for pid in sorted(counts.index) if pid in lost]
    return pd.DataFrame(rows, columns=["patient_id", "images", "reason"])


def rebuild_cohort(vault: Vault, path: str | os.PathLike, out_dir=None, **kw) -> CohortResult:
    """A new version of a cohort without patients whose consent ended.

    The new folder is ``<name>-v<N>`` beside the old one; its provenance
    names the run it supersedes and why.
    """
    path = Path(path)
    provenance, _ = read_cohort(path)
    lost = check_cohort(vault, path)
    spec = CohortSpec.from_json(provenance["spec"])
    version = int(provenance.get("version", 1)) + 1
    base = spec.name.rsplit("-v", 1)[0] if "-v" in spec.name else spec.name
    new_spec = CohortSpec.from_json({**spec.to_json(), "name": f"{base}-v{version}",
                                     "pseudonym_domain": spec.domain()})
    reason = ("consent no longer active for " + ", ".join(
        f"{n} patients ({r})" for r, n in lost["reason"].value_counts().items())) if len(lost) else "rebuilt on request"
    out = Path(out_dir) if out_dir else path.with_name(new_spec.name)
    result = build_cohort(vault, new_spec, out, supersedes={
        "run_id": provenance["run_id"], "cohort": provenance["cohort"], "reason": reason,
        "patients_removed": int(len(lost)),
    }, **kw)
    prov_path = out / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["version"] = version
    prov_path.write_text(json.dumps(prov, indent=1, sort_keys=True) + "\n")
    return result
