"""The ``workbench`` command line.

Every ``WorkbenchError`` becomes a one-line message on stderr and a non-zero
exit status, never a traceback. Passphrases are asked with a hidden prompt;
scripts pipe theirs in with ``--passphrase-stdin`` (as ``docker login
--password-stdin`` does); a passphrase is never read from a pipe without it.
``WORKBENCH_PASSPHRASE`` and ``WORKBENCH_NEW_PASSPHRASE`` exist for scripts
and tests only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from . import __version__
from .errors import InvalidInput, WorkbenchError
from .vault import ROLE_HELP, ROLES, SCOPES, init_vault, open_vault


def _common() -> argparse.ArgumentParser:
    # SUPPRESS defaults let the options appear before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--vault", default=argparse.SUPPRESS, metavar="PATH",
                        help="vault folder (default: $WORKBENCH_VAULT)")
    common.add_argument("--user", default=argparse.SUPPRESS, metavar="NAME",
                        help="your user name in the vault (default: $WORKBENCH_USER)")
    common.add_argument("--passphrase-stdin", action="store_true", default=argparse.SUPPRESS,
                        help="read your passphrase (for `vault init`, the new admin's) as one line "
                             "from standard input, for scripts: `workbench ... --passphrase-stdin < FILE`")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="workbench", parents=[common],
        description="Encrypted vault, consent and de-identification for clinical photographs.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_, **kw):
        return sub.add_parser(name, help=help_, parents=[common], description=help_, **kw)

    vault = add("vault", "create or check a vault")
    vsub = vault.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = vsub.add_parser("init", help="create a new vault", parents=[common])
    p.add_argument("path", help="a new, empty folder")
    p.add_argument("--admin", required=True, help="user name of the first admin")
    p = vsub.add_parser("check", help="check every stored file, stale files and the audit chain",
                        parents=[common])
    p.add_argument("--repair", action="store_true",
                   help="remove stale files (orphan blobs and temporary files an interrupted ingest left)")
    vsub.add_parser("previews", help="render the previews ingest left for later (needs the originals key)",
                    parents=[common])
    p = vsub.add_parser("checkpoint", parents=[common],
                        help="write a signed checkpoint of the log to a file outside the vault folder")
    p.add_argument("--to", required=True, metavar="FILE",
                   help="a file outside the vault folder (a removable drive, your own folder)")
    vsub.add_parser("forget-witness", parents=[common],
                    help="after restoring a backup on purpose: forget what you verified of this vault "
                         "on this machine (your next open verifies the whole log)")

    user = add("user", "manage users and their roles")
    usub = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = usub.add_parser("add", help="add a user (admins only)", parents=[common],
                        epilog="roles: " + "; ".join(f"{r}: {h}" for r, h in ROLE_HELP.items()))
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=list(ROLES))
    p = usub.add_parser("passwd", help="change a passphrase", parents=[common])
    p.add_argument("name")
    p = usub.add_parser("remove", help="remove a user's key slot (admins only)", parents=[common])
    p.add_argument("name")
    usub.add_parser("list", help="list users and roles", parents=[common])

    consent = add("consent", "record, withdraw and show consent")
    csub = consent.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = csub.add_parser("add", help="record a consent grant", parents=[common])
    p.add_argument("--patient", required=True, metavar="ID", help="patient id (MRN)")
    p.add_argument("--scopes", required=True, help="comma list of: " + ",".join(SCOPES))
    p.add_argument("--expires", metavar="YYYY-MM-DD", help="last day the grant is valid")
    p.add_argument("--identifiable", action="store_true", help="identifiable use was allowed")
    p.add_argument("--form", metavar="FILE", help="scanned consent form (stored encrypted)")
    p.add_argument("--name", help="patient name, for a new patient (stored sealed)")
    p.add_argument("--birth-date", metavar="YYYY-MM-DD", help="for a new patient (stored sealed)")
    p = csub.add_parser("withdraw", help="record a withdrawal (never deletes)", parents=[common])
    p.add_argument("--patient", required=True, metavar="ID")
    p.add_argument("--scopes", help="comma list (default: all scopes)")
    p.add_argument("--shred", action="store_true",
                   help="also destroy the keys of the patient's de-identified derivatives")
    p = csub.add_parser("show", help="show consent records (no identifiers)", parents=[common])
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")

    p = add("photos", "list the photos a query for a purpose returns")
    p.add_argument("--purpose", required=True, help="one of: " + ", ".join(SCOPES))
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--identifiers", action="store_true",
                   help="add identifying columns (admin and clinician only)")
    p.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                   help="filter, e.g. --where body_site=forearm (repeatable)")

    def photo_fields(p, patient_help=None):
        """What every way of adding photos asks: whose, and of what."""
        p.add_argument("--patient", required=True, metavar="ID", help=patient_help)
        p.add_argument("--body-site", required=True)
        p.add_argument("--laterality", choices=["left", "right", "bilateral", "midline"])
        p.add_argument("--diagnosis", metavar="CODE")

    p = add("ingest", "encrypt photos from files, folders or a memory card into the vault")
    p.add_argument("paths", nargs="+", metavar="PATH")
    photo_fields(p)
    p.add_argument("--remove-source", action="store_true",
                   help="delete each source file once its photo is verified in the vault")
    p.add_argument("--allow-no-consent", action="store_true",
                   help="store photos of a patient with no consent on record (care use only)")

    p = add("import-card", "import a memory card (mounted folder, or a camera in storage mode) into the vault")
    p.add_argument("card", nargs="?", metavar="CARD",
                   help="the mounted card folder (e.g. /media/$USER/EOS_DIGITAL); leave out with --camera")
    p.add_argument("--camera", nargs="?", const="", metavar="MODEL_OR_PORT",
                   help="read the card through libgphoto2 from the connected camera (or the one "
                        "named; disk:/path reads a folder through libgphoto2)")
    photo_fields(p)
    p.add_argument("--remove", action="store_true",
                   help="delete each file from the card once its photo is verified in the vault")
    p.add_argument("--allow-no-consent", action="store_true",
                   help="store photos of a patient with no consent on record (care use only)")

    p = add("capture", "take pictures with a tethered camera straight into the vault")
    photo_fields(p, "patient id (MRN); needs an active consent that covers care")
    p.add_argument("--count", type=int, metavar="N",
                   help="pictures to take (default 1; with --watch: until Ctrl+C)")
    p.add_argument("--keep-on-camera", action="store_true",
                   help="leave each picture on the camera after it is verified in the vault")
    p.add_argument("--camera", metavar="MODEL_OR_PORT", help="which camera, when several are connected")
    p.add_argument("--watch", action="store_true",
                   help="pull in each picture the camera's own shutter takes, until Ctrl+C")
    p.add_argument("--target", choices=["ram", "card"],
                   help="set where the camera keeps its pictures first (ram: nothing left on the card)")

    add("cameras", "list the cameras libgphoto2 finds connected")

    audit = add("audit", "verify or show the audit trail")
    asub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = asub.add_parser("verify", parents=[common],
                        help="check every signature, link and table against the log; exit 1 at the first problem")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="also prove that the log still extends this checkpoint (not cut short or rolled back)")
    p = asub.add_parser("show", help="print audit records", parents=[common])
    p.add_argument("--since", metavar="YYYY-MM-DD")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table",
                   help="table: one line per record, cut to the terminal's width; csv, json: every detail")

    p = add("deid", "de-identify image files or folders into an output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files or folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--report", metavar="FILE.json",
                   help="write the report here (it maps inputs to outputs: keep it as safe as the inputs)")
    p.add_argument("--regions", metavar="FILE.json", help="regions marked by hand, keyed by input file name")
    p.add_argument("--style", choices=["fill", "mosaic", "blur"], default="fill")
    p.add_argument("--lossless", action="store_true",
                   help="JPEG: replace only the blocks that touch a region, keep all others bit-identical")
    p.add_argument("--strict", action="store_true", help="exit 1 when any output is not verified")
    p.add_argument("--key-file", metavar="FILE",
                   help="pseudonym key (`workbench key new FILE`); default: a single-use random key")
    p.add_argument("--no-detect", action="store_true",
                   help="redact only the regions given with --regions (no detectors)")

    cohort = add("cohort", "build, check and rebuild de-identified cohorts")
    cosub = cohort.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = cosub.add_parser("build", help="run notebooks/30_build_cohort through papermill", parents=[common])
    p.add_argument("--out", metavar="DIR", help="default: datasets/<name>")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="notebook parameter, e.g. --param name=forearms --param sample_size=20")
    p = cosub.add_parser("check", help="list patients of a cohort whose consent ended (exit 1 if any)",
                         parents=[common])
    p.add_argument("path")
    p = cosub.add_parser("rebuild", help="a new version of a cohort without them", parents=[common])
    p.add_argument("path")

    share = add("share", "share a verified cohort: encrypted bundles and the share portal")
    ssub = share.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ssub.add_parser("bundle", parents=[common],
                        help="write an encrypted bundle (AES-256 zip, or age with --recipient) of a cohort")
    p.add_argument("path", metavar="DATASET", help="the cohort or teaching-set folder (datasets/NAME)")
    p.add_argument("--to", required=True, metavar="FILE", help="the bundle to write (never overwritten)")
    p.add_argument("--for", dest="collaborator", required=True, metavar="NAME",
                   help="who it is for (recorded in the audit trail)")
    p.add_argument("--recipient", action="append", default=[], metavar="AGE_PUBLIC_KEY",
                   help="an age public key (age1...): write an age file for it (repeatable)")
    p = ssub.add_parser("create", parents=[common],
                        help="share a cohort on the portal with a collaborator account or as a link")
    p.add_argument("path", metavar="DATASET")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", metavar="NAME", help="the collaborator's account name")
    who.add_argument("--link", action="store_true", help="a share link instead of an account")
    p.add_argument("--expires", default="30", metavar="DAYS_OR_DATE",
                   help="days from now (default 30) or the last day, YYYY-MM-DD; at most 365 days")
    p.add_argument("--download", action="store_true", help="permit downloads of images and the whole set")
    p.add_argument("--no-watermark", action="store_true", help="do not name the viewer on served images")
    p = ssub.add_parser("revoke", parents=[common], help="end a share now")
    p.add_argument("share_id", metavar="SHARE")
    p = ssub.add_parser("list", parents=[common], help="list shares and their status (never a secret)")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p = ssub.add_parser("serve", parents=[common],
                        help="run the share portal (as the vault's portal account)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--share", action="append", default=None, metavar="SHARE",
                   help="serve only this share (repeatable; default: every active share)")
    p.add_argument("--tls-self-signed", action="store_true",
                   help="serve HTTPS with a certificate generated at start")
    p.add_argument("--behind-proxy", action="store_true",
                   help="TLS ends at a reverse proxy on this machine (see the README): Secure cookies, "
                        "client address from X-Forwarded-For sent by 127.0.0.1")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the portal answers to (the proxy's public name)")
    p.add_argument("--datasets", metavar="DIR",
                   help="where the shared folders are now, if the datasets folder was moved "
                        "(each is verified against its share's signed digests all the same)")

    p = add("teaching", "build a teaching set (gallery + deck) through papermill")
    p.add_argument("--out", metavar="DIR", help="default: datasets/<name>")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")

    p = add("phantoms", "generate a phantom set with ground truth (fake identities only)")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)

    p = add("evaluate", "measure redaction quality on a phantom set")
    p.add_argument("phantom_dir", metavar="PHANTOM_DIR")
    p.add_argument("--report", metavar="FILE")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes in parallel (default 1; with N > 1 set WORKBENCH_THREADS=1)")

    key = add("key", "create a pseudonym key file")
    ksub = key.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = ksub.add_parser("new", help="write a new random key to FILE (never overwrites)", parents=[common])
    p.add_argument("file")

    p = add("lab", "start JupyterLab offline on 127.0.0.1 with the project's kernel (see workbench/lab.py)")
    p.add_argument("--port", type=int, help="default: 8888 or the next free port")
    p.add_argument("--no-browser", action="store_true", help="print the URL, do not open a browser")
    p.add_argument("--allow-root", action="store_true", help="run as root (containers only)")
    p.add_argument("--notebook-dir", metavar="DIR",
                   help="serve the notebooks of DIR (default: the project's notebooks/)")

    p = add("demo", "build a demo vault from generated photos and show what it holds")
    p.add_argument("--workdir", default="demo", metavar="DIR", help="default: ./demo")
    p.add_argument("--photos", type=int, default=24, help="number of generated photos")
    return parser


def _vault_path(args) -> Path:
    path = getattr(args, "vault", None) or os.environ.get("WORKBENCH_VAULT")
    if not path:
        raise InvalidInput("name the vault with --vault PATH or set WORKBENCH_VAULT")
    return Path(path)


def _user(args) -> str:
    user = getattr(args, "user", None) or os.environ.get("WORKBENCH_USER")
    if not user:
        raise InvalidInput("name your user with --user NAME or set WORKBENCH_USER")
    return user


def _open(args):
    return open_vault(_vault_path(args), user=_user(args), passphrase=args.passphrase)


def _read_passphrase_stdin() -> str:
    """One line of standard input, without its line ending (``--passphrase-stdin``)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise InvalidInput(
            "--passphrase-stdin reads the passphrase from a pipe or a file, not from a terminal, "
            "where it would show; at a terminal leave it out and type it at the hidden prompt"
        )
    try:
        line = sys.stdin.buffer.readline().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("--passphrase-stdin read a line that is not UTF-8 text; check the input") from None
    passphrase = line.rstrip("\r\n")
    if not passphrase:
        raise InvalidInput(
            "--passphrase-stdin read an empty line; send the passphrase as the first line of "
            "standard input, e.g. `workbench ... --passphrase-stdin < FILE`"
        )
    return passphrase


#: commands that take no passphrase, so --passphrase-stdin would be read for nothing
_NO_PASSPHRASE = ("demo", "lab", "phantoms", "evaluate", "key", "cameras")


def _emit(frame, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(sys.stdout, index=False, na_rep="")
    elif fmt == "json":
        clean = frame.astype(object).where(frame.notna(), None)
        print(json.dumps(clean.to_dict(orient="records"), indent=1, default=str))
    elif frame.empty:
        print("(none)")
    else:
        import pandas as pd

        # An empty field prints as empty, not as "None" or "NaN".
        blank = frame.astype(object).where(frame.notna(), "")
        with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 40):
            print(blank.to_string(index=False))


def _short(value) -> str:
    """A detail value in a few characters: ids cut to 8, long lists counted."""
    if isinstance(value, list):
        return ",".join(map(_short, value)) if len(value) <= 3 else f"{len(value)} items"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in sorted(value.items())) + "}"
    text = str(value)
    return text[:8] if len(text) > 12 and text.isalnum() else text


def _audit_lines(frame, width: int) -> list[str]:
    """One line per audit record (seq, time, user, action, short details), cut to ``width``."""
    lines = []
    user_w = max(map(len, frame["user"]), default=0)
    action_w = max(map(len, frame["action"]), default=0)
    for rec in frame.itertuples(index=False):
        details = " ".join(f"{k}={_short(v)}" for k, v in sorted((rec.detail or {}).items())
                           if v not in (None, "", [], {}))
        line = f"{rec.seq:>4} {rec.time[:19].replace('T', ' ')} {rec.user:<{user_w}} {rec.action:<{action_w}} {details}"
        line = line.rstrip()
        lines.append(line if len(line) <= width else line[:width - 1] + "\u2026")
    return lines


def _filters(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput("write a filter as COLUMN=VALUE, e.g. --where body_site=forearm")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def run(args) -> int:
    cmd, action = args.command, getattr(args, "action", None)
    args.passphrase = None
    if getattr(args, "passphrase_stdin", False):
        if cmd in _NO_PASSPHRASE:
            raise InvalidInput(f"`workbench {cmd}` takes no passphrase; leave out --passphrase-stdin")
        args.passphrase = _read_passphrase_stdin()
    if cmd == "vault" and action == "init":
        with init_vault(args.path, admin=args.admin, passphrase=args.passphrase) as vault:
            print(f"created vault {vault.root} with admin {vault.user}")
        return 0
    if cmd == "demo":
        from .demo import run_demo

        return run_demo(Path(args.workdir), photos=args.photos)
    if cmd == "deid":
        return _deid(args)
    if cmd == "lab":
        from .lab import run_lab

        return run_lab(port=args.port, open_browser=not args.no_browser, allow_root=args.allow_root,
                       vault=getattr(args, "vault", None), user=getattr(args, "user", None),
                       notebook_dir=args.notebook_dir)
    if cmd == "phantoms":
        from .phantoms import run_phantoms

        return run_phantoms(args.out, args.count, args.seed)
    if cmd == "evaluate":
        from .evaluate import run_evaluate

        if args.workers < 1:
            raise InvalidInput("--workers is 1 or more")
        return run_evaluate(args.phantom_dir, args.report, workers=args.workers)
    if cmd in ("teaching",) or (cmd == "cohort" and action == "build"):
        return _run_build(args)
    if cmd == "vault" and action == "forget-witness":
        from .vault import forget_witness

        if forget_witness(_vault_path(args), user=_user(args)):
            print("forgot what you verified of this vault on this machine; the next open checks the "
                  "whole log again. Do this only for a backup you restored on purpose, and compare "
                  "it with a checkpoint (`workbench audit verify --checkpoint FILE`)")
        else:
            print("nothing to forget: you have no witness of this vault on this machine")
        return 0
    if cmd == "cameras":
        from .camera import list_cameras

        cameras = list_cameras()
        for model, port in cameras:
            print(f"{model}\t{port}")
        if not cameras:
            print("no camera found: check the cable, that the camera is on, and the README's "
                  "tethering notes", file=sys.stderr)
        return 0 if cameras else 1
    if cmd == "import-card" and (args.card is None) == (args.camera is None):
        raise InvalidInput("name the card folder, or give --camera (not both)")
    if cmd == "capture" and args.count is not None and args.count < 1:
        raise InvalidInput("--count is 1 or more")
    if cmd == "key":
        from .deid import generate_key, save_key

        save_key(args.file, generate_key())
        print(f"wrote a new pseudonym key to {args.file}; keep it as safe as the vault")
        return 0
    with _open(args) as vault:
        if cmd == "vault" and action == "checkpoint":
            cp = vault.write_checkpoint(args.to)
            print(cp.text(), end="")
            print(f"wrote the checkpoint to {args.to}; keep it outside the vault folder")
            return 0
        if cmd == "vault" and action == "previews":
            print(f"rendered {vault.render_previews()} previews")
            return 0
        if cmd == "vault" and action == "check":
            return _check(vault, repair=args.repair)
        if cmd == "user":
            if action == "add":
                vault.add_user(args.name, args.role)
                print(f"added user {args.name} ({args.role})")
            elif action == "passwd":
                vault.set_passphrase(args.name)
                print(f"changed the passphrase of {args.name}")
            elif action == "remove":
                vault.remove_user(args.name)
                print(f"removed user {args.name}")
            else:
                _emit(vault.users(), "table")
            return 0
        if cmd == "consent":
            if action == "add":
                seq = vault.add_consent(
                    args.patient, args.scopes, expires=args.expires, identifiable=args.identifiable,
                    form=args.form, name=args.name, birth_date=args.birth_date,
                )
                print(f"recorded consent record {seq}")
            elif action == "withdraw":
                seq = vault.withdraw_consent(args.patient, args.scopes, shred_derivatives=args.shred)
                print(f"recorded withdrawal as consent record {seq}")
            else:
                _emit(vault.consent_history(), args.format)
            return 0
        if cmd == "photos":
            frame = vault.photos(args.purpose, include_identifiers=args.identifiers, **_filters(args.where))
            _emit(frame, args.format)
            return 0
        if cmd == "ingest":
            return _ingest(vault, args)
        if cmd in ("import-card", "capture"):
            return _camera(vault, args)
        if cmd == "cohort":
            from .cohort import check_cohort, rebuild_cohort

            if action == "check":
                flagged = check_cohort(vault, args.path)
                if flagged.empty:
                    print("every patient in this cohort is still consented for its purpose")
                    return 0
                print(f"{len(flagged)} patients in this cohort are no longer consented:", file=sys.stderr)
                _emit(flagged, "table")
                return 1
            result = rebuild_cohort(vault, args.path)
            print(result.summary())
            print(f"new version: {result.path}")
            return 0
        if cmd == "share":
            return _share(vault, args)
        if cmd == "audit":
            if action == "verify":
                check = vault.verify_audit(checkpoint=args.checkpoint)
                if check.ok:
                    extends = " and extends the checkpoint" if args.checkpoint else ""
                    print(f"audit log intact{extends}: {check.records} records")
                    return 0
                signer = f" (signed as {check.signer})" if check.signer else ""
                where = f" at record {check.first_bad}" if check.first_bad else ""
                print(f"audit log BROKEN{where}{signer}: {check.reason}", file=sys.stderr)
                for seq, user, reason in check.breaks[1:]:
                    print(f"  also record {seq} (signed as {user}): {reason}", file=sys.stderr)
                return 1
            frame = vault.audit_records(since=args.since)
            if args.format == "table":
                # fits the terminal; --format json or csv has every detail in full
                width = shutil.get_terminal_size().columns
                print("\n".join(_audit_lines(frame, width)) if len(frame) else "(none)")
                return 0
            if args.format == "csv":
                frame["detail"] = frame["detail"].map(lambda d: json.dumps(d, sort_keys=True))
            _emit(frame, args.format)
            return 0
    raise InvalidInput("unknown command; see `workbench --help`")


def _share(vault, args) -> int:
    from . import share

    action = args.action
    if action == "bundle":
        result = share.bundle(vault, args.path, args.to, collaborator=args.collaborator,
                              recipients=args.recipient or None)
        print(f"wrote {result.format} bundle {result.path} ({result.images} images, sha256 {result.sha256})")
        if result.passphrase:
            print(f"passphrase (shown once, stored nowhere; send it by another channel): {result.passphrase}")
        return 0
    if action == "create":
        expires = int(args.expires) if args.expires.isdigit() else args.expires
        new = share.create_share(vault, args.path, account=args.account, link=args.link, expires=expires,
                                 download=args.download, watermark=not args.no_watermark)
        s = new.share
        print(f"created share {s.share_id} of {Path(s.dataset).name} until {s.expires.isoformat(timespec='minutes')}"
              f" (downloads {'on' if s.download else 'off'}, watermark {'on' if s.watermark else 'off'})")
        if new.link_path:
            print(f"link (shown once; append to the portal's address): {new.link_path}")
        else:
            print(f"account {s.account}, password (shown once, stored only as a hash): {new.secret}")
        return 0
    if action == "revoke":
        revoked = share.revoke_share(vault, args.share_id)
        print(f"revoked share {revoked.share_id}")
        return 0
    if action == "list":
        _emit(share.list_shares(vault), args.format)
        return 0
    from .share.portal import serve

    def ready(url, fingerprint):
        tls = f"; its certificate's SHA-256 fingerprint: {fingerprint}" if fingerprint else ""
        print(f"share portal at {url} (Ctrl+C stops it){tls}", flush=True)

    serve(vault, host=args.host, port=args.port, share_ids=args.share, tls_self_signed=args.tls_self_signed,
          behind_proxy=args.behind_proxy, allowed_hosts=args.allowed_host, datasets=args.datasets,
          ready=ready)
    return 0


def _run_build(args) -> int:
    """Cohort and teaching builds run as papermill notebooks; the kernel opens the vault."""
    from .cohort import CohortResult, read_cohort
    from .runs import parse_params, run_cohort_notebook

    from .vault import capability

    vault_path, user = _vault_path(args), _user(args)
    # Unlock here (prompting if needed): a wrong passphrase fails fast, and the
    # kernel gets a capability that expires with the run, never the passphrase.
    params = parse_params(args.param)
    params.setdefault("vault_path", str(vault_path.resolve()))
    params.setdefault("user", user)
    notebook = "40_teaching_set" if args.command == "teaching" else "30_build_cohort"
    with open_vault(vault_path, user=user, passphrase=args.passphrase) as vault, capability(vault):
        out = run_cohort_notebook(notebook, params, args.out)
    prov, _ = read_cohort(out)
    result = CohortResult(out, prov["images"], prov["excluded"], prov["run_id"])
    print(result.headline)
    if result.warning:
        print(f"workbench: warning: {result.warning}", file=sys.stderr)
    print(f"built {out} (the executed notebook is inside)")
    return 0


def _check(vault, *, repair: bool) -> int:
    """``vault check``: stored files, stale files, audit chain; exit 1 unless all of them are fine."""
    from .errors import ConflictError

    bad = vault.check_files()
    print(f"files: {'ok' if not bad else f'{len(bad)} damaged or missing'}")
    problems = bool(bad)
    try:
        if repair:
            removed = vault.remove_stale_files()
            print(f"stale files: {removed} removed" if removed else "stale files: none")
        else:
            stale = vault.stale_files()
            problems |= bool(stale)
            print(f"stale files: {len(stale)} (orphan blobs or temporary files that an interrupted "
                  "ingest left; `workbench vault check --repair` removes them)" if stale else "stale files: none")
    except ConflictError as exc:
        print(f"stale files: not checked: {exc}")
        problems = True  # a check that could not look is not a pass
    audit = vault.verify_audit()
    print(f"audit: {audit.reason} ({audit.records} records)")
    return 1 if problems or not audit.ok else 0


def _ingest(vault, args) -> int:
    from tqdm import tqdm

    from .ingest import ingest

    def progress(done, total, result):
        if result.status in ("error", "skipped"):
            # The path is the operator's own input, echoed to their terminal only
            # (above the progress bar, which never shows it).
            what = "skipped" if result.status == "skipped" else type(result.error).__name__
            tqdm.write(f"[{done}/{total}] {result.source}: {what}: {result.error}", file=sys.stderr)

    report = ingest(
        vault, args.paths, patient=args.patient, body_site=args.body_site,
        laterality=args.laterality, diagnosis=args.diagnosis,
        remove_source=args.remove_source, allow_no_consent=args.allow_no_consent,
        progress=progress,
    )
    removed = sum(r.source_removed for r in report.results)
    print(report.summary() + (f"; {removed} source files removed" if args.remove_source else ""))
    return 0 if report.ok else 1


def _camera(vault, args) -> int:
    """``import-card`` and ``capture``: per-file problems above the bar, a summary at the end."""
    import signal

    from tqdm import tqdm

    from .camera import capture, import_card, open_camera

    def progress(done, total, entry):
        if entry.status in ("failed", "left"):
            # the file's name on the card, echoed to the operator's terminal only
            tqdm.write(f"[{done}/{total}] {entry.file}: {entry.status}: {entry.error}", file=sys.stderr)

    fields = dict(patient=args.patient, body_site=args.body_site, laterality=args.laterality,
                  diagnosis=args.diagnosis, progress=progress)
    if args.command == "import-card":
        if args.card is not None:
            report = import_card(vault, args.card, remove=args.remove,
                                 allow_no_consent=args.allow_no_consent, **fields)
        else:
            with open_camera(args.camera or None) as camera:
                report = import_card(vault, camera, remove=args.remove,
                                     allow_no_consent=args.allow_no_consent, **fields)
    else:
        stopping = []
        previous = None
        if args.watch:
            # Ctrl+C ends the watch after the file in hand is stored (never mid-transfer)
            previous = signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
            print("watching the camera: press its shutter; Ctrl+C to stop", file=sys.stderr)
        try:
            count = args.count if args.count is not None else (None if args.watch else 1)
            report = capture(vault, args.camera, count=count, keep_on_camera=args.keep_on_camera,
                             watch=args.watch, target=args.target, stop=lambda: bool(stopping), **fields)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
    print(report.summary())
    return 0 if report.ok else 1


def _deid(args) -> int:
    from tqdm import tqdm

    from .deid import Policy, Pseudonyms, generate_key, load_key
    from .deid._batch import load_regions, run_batch

    policy = Policy(style=args.style, lossless=args.lossless,
                    detectors=() if args.no_detect else Policy().detectors)
    if args.key_file:
        key = load_key(args.key_file)
    elif getattr(args, "vault", None) or os.environ.get("WORKBENCH_VAULT"):
        # the vault's pseudonym tier: the same pseudonyms as the vault's own exports
        with _open(args) as vault:
            key = vault.pseudonym_key("de-identify files with the vault's pseudonym key")
        print("note: pseudonyms use the vault's pseudonym key", file=sys.stderr)
    else:
        key = generate_key()
        print("note: no --key-file or vault, so pseudonyms use a single-use key and cannot be "
              "linked to other runs", file=sys.stderr)

    def on_error(number, total, path, exc):
        # The path is the operator's own input, echoed to their terminal only.
        tqdm.write(f"[{number}/{total}] {path}: {type(exc).__name__}: {exc}", file=sys.stderr)

    report = run_batch(args.inputs, args.out, policy=policy, pseudonyms=Pseudonyms(key),
                       regions=load_regions(args.regions), on_error=on_error)
    if args.report:
        from .vault._files import atomic_write

        atomic_write(Path(args.report), (json.dumps(report, indent=1) + "\n").encode())
    files = report["files"]
    failed = sum(1 for f in files if f["output"] is None)
    unverified = sum(1 for f in files if f["output"] is not None and not f["verified"])
    print(f"{len(files) - failed} written ({unverified} not verified), {failed} failed, "
          f"of {len(files)} files -> {args.out}")
    if failed or (args.strict and unverified):
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if sys.stderr.isatty():
        # progress bars on, also in the papermill kernels of builds (whose stderr
        # is relayed here); WORKBENCH_PROGRESS=0 keeps them off
        os.environ.setdefault("WORKBENCH_PROGRESS", "1")
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try
        return code
    except BrokenPipeError:
        # The reader went away (`workbench photos | head`). As the Python docs'
        # "Note on SIGPIPE" says: point stdout at devnull so that the flush at
        # exit does not fail again, and leave quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except WorkbenchError as exc:
        print(f"workbench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
