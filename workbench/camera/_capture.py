"""Tethered capture: take pictures (or watch the camera's own shutter) straight into the vault."""

from __future__ import annotations

from typing import Callable

from ..errors import ConsentError
from ._device import Camera, open_camera
from ._import import ImportedFile, ImportReport, _CameraSource, _Importer

#: seconds to wait after a file for the rest of its shot (RAW+JPEG: the camera adds
#: two files); a raw file that comes later than this is taken as a shot of its own
COMPANION_WAIT = 1.0


def _require_capture_consent(vault, patient: str) -> None:
    """Refuse, audited, unless the patient has an active consent that covers care."""
    ref = vault._find_patient(patient)
    if ref is None or not vault._consent_holds(ref, "care") \
            or not vault.consent_history(ref).shape[0]:
        vault._record("denied", {"attempt": "capture", "purpose": "care"})
        raise ConsentError(
            "this patient is unknown or has no active consent that covers care, so no picture was "
            "taken; record consent first (`workbench consent add --patient ID --scopes care,...`)",
            purpose="care",
        )


def capture(
    vault,
    camera: str | Camera | None = None,
    *,
    patient: str,
    body_site: str,
    laterality: str | None = None,
    diagnosis: str | None = None,
    count: int | None = 1,
    keep_on_camera: bool = False,
    watch: bool = False,
    target: str | None = None,
    stop: Callable[[], bool] | None = None,
    poll: float = 1.0,
    progress: Callable[[int, int, ImportedFile], None] | None = None,
    preview: Callable[[str, bytes], None] | None = None,
) -> ImportReport:
    """Take pictures with a tethered camera, or pull in each one its shutter takes, into the vault.

    Each picture is downloaded into memory, stored through the vault's ingest
    (encrypted, read back), verified, and then deleted from the camera unless
    ``keep_on_camera``. Each capture and each deletion is a signed log record.
    A picture that could not be stored (camera unplugged mid-transfer, a
    failed verification, a vault that refused it) stays on the camera, and
    its entry says what happened and what to do; `workbench import-card
    --camera` picks such files up later. A busy camera is retried with
    backoff; a camera that stops answering ends the run.

    Parameters
    ----------
    vault : Vault
        An open vault whose role may add photos.
    camera : str or Camera, optional
        An open :class:`Camera`, or a model or port to open (see
        :func:`open_camera`); by default the only camera connected.
    patient : str
        The patient's id (MRN); they need an active consent covering care.
    body_site, laterality, diagnosis : str
        Non-identifying fields stored with each photo.
    count : int or None
        Pictures to take (or, with ``watch``, to wait for; None: until
        ``stop`` says so).
    keep_on_camera : bool
        Leave each picture on the camera after it is verified in the vault.
    watch : bool
        Do not trigger the camera: wait for the photographer's own shutter
        (libgphoto2 file-added events) and pull in each new file.
    target : {"ram", "card"}, optional
        Set the camera's capture target first (RAM leaves nothing on the card).
    stop : callable, optional
        Polled between files (every ``poll`` seconds while watching); a true
        result ends the run.
    poll : float
        Seconds to wait for an event before polling ``stop`` again.
    progress : callable, optional
        Called as ``progress(done, total, imported_file)`` after each file.
    preview : callable, optional
        Called as ``preview(extension, data)`` with each file's bytes as soon
        as they are in memory (before they are stored), e.g. to show the last
        shot; identifiable: keep it in memory.

    Returns
    -------
    ImportReport
        An entry per file pulled in, and the id of the sealed manifest.

    Raises
    ------
    ConsentError
        Before the camera is touched: no active consent that covers care.
    NotFound, InvalidInput
        No camera, or several and ``camera`` does not pick one.
    CameraError
        The camera cannot capture, is full, or stopped answering. Files
        pulled in before it are in the report's manifest.
    """
    _require_capture_consent(vault, patient)
    vault._keys.get("identities_pub", "capture photos")
    own = not isinstance(camera, Camera)
    cam = open_camera(camera) if own else camera
    importer = _Importer(vault, _CameraSource(cam), patient=patient, body_site=body_site,
                         laterality=laterality, diagnosis=diagnosis, allow_no_consent=False,
                         remove=not keep_on_camera, workers=0, progress=progress, desc="capture",
                         preview=preview)
    try:
        if target is not None:
            cam.set_target(target)
        shots = 0
        while count is None or shots < count:
            if stop is not None and stop():
                break
            if watch:
                first = cam.wait_for_file(poll)
                if first is None:
                    continue
            else:
                first = cam.capture()
            shots += 1
            vault._record("camera_capture", {"shot": shots, "trigger": "camera" if watch else "workbench"})
            files = [first]
            while (more := cam.wait_for_file(COMPANION_WAIT)) is not None:
                files.append(more)
            importer.run([(f, None) for f in files])
            if importer.gone is not None:
                raise importer.gone
    finally:
        report = importer.finish()
        if own:
            cam.close()
    return report
