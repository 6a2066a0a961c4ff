"""The capture panel: a tethered camera's status, who and what is photographed, shots into the vault."""

from __future__ import annotations

import threading
from typing import Callable

import traitlets

from .. import _imageio
from ..camera import Camera, capture, open_camera
from ..camera._capture import _require_capture_consent
from ..camera._import import RAW_EXTENSIONS
from ..errors import InvalidInput, WorkbenchError
from ..review import role_advice
from ..vault import Vault
from ..vault._log import INGEST_ROLES
from ._base import _Widget, action, module

#: longest side of the last shot as the panel shows it
PREVIEW_SIDE = 480
#: lateralities offered (as ``workbench capture --laterality``)
LATERALITIES = ("", "left", "right", "bilateral", "midline")


class CapturePanel(_Widget):
    """Take pictures with a tethered camera straight into the vault, from a notebook.

    Shows the camera (model, port, battery, free space), takes the patient's
    id, the body site and laterality, and then either takes a picture
    (``capture``) or watches the camera's own shutter (``watch`` / ``stop``,
    in a background thread) until stopped. Each shot goes through
    :func:`workbench.capture`: consent that covers care is checked before
    the camera is touched, the file is stored, verified and then deleted
    from the camera (unless ``keep_on_camera``). The last shot is shown over
    the comm (never kept in a trait), and ``shots`` lists what went into the
    vault: photo id, status, verified, removed, error. The patient's id is
    sent with each request and kept in Python only, never in the widget's
    state, so a saved notebook holds no identifier.

    Parameters
    ----------
    vault : Vault
        Opened by a role that adds photos (photographer, clinician, admin).
    camera : str or Camera, optional
        The camera, or a model or port to open (default: the only one connected).
    keep_on_camera : bool, default False
    target : {"ram", "card"}, optional
        Set the camera's capture target before the first shot.
    """

    _esm = module("capture.js")

    can_capture = traitlets.Bool(False).tag(sync=True)
    #: ``{"model", "port", "battery", "free_mb"}`` of the open camera; empty without one
    camera = traitlets.Dict().tag(sync=True)
    lateralities = traitlets.List(list(LATERALITIES)).tag(sync=True)
    watching = traitlets.Bool(False).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    #: what went into the vault, newest last: ``{"n", "kind", "status", "photo_id", "verified", "removed", "error"}``
    shots = traitlets.List().tag(sync=True)

    def __init__(self, vault: Vault, camera: str | Camera | None = None, *, keep_on_camera: bool = False,
                 target: str | None = None):
        super().__init__(role=vault.role)
        self._vault = vault
        self._select = None if isinstance(camera, Camera) else camera
        self._cam: Camera | None = camera if isinstance(camera, Camera) else None
        self._keep, self._target = bool(keep_on_camera), target
        self._last: bytes | None = None
        self._entries: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if vault.role not in INGEST_ROLES:
            self.error = role_advice(vault, "capture photos")
            return
        self.can_capture = True
        self.refresh()

    def on_shot(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(shot)`` after each file went into the vault (or failed): no identifier in it."""
        self._on("shot", fn)

    # -- the camera ------------------------------------------------------------------

    @action
    def refresh(self) -> None:
        """Find the camera again (after plugging it in) and show its status."""
        self._need()
        if self.watching:
            raise InvalidInput("stop watching first")
        try:
            if self._cam is None:
                self._cam = open_camera(self._select)
            self.camera = self._cam.status()
        except WorkbenchError:
            self._cam, self.camera = None, {}
            raise
        c = self.camera
        self.status = (f"{c['model']} on {c['port']}: battery {c['battery'] or 'not reported'}, "
                       f"{'free space not reported' if c['free_mb'] is None else str(c['free_mb']) + ' MB free'}")

    def close(self) -> None:
        """Stop watching and let the camera go (the widget closes too)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._cam is not None and self._select is not None:
            self._cam.close()
        self._cam = None
        super().close()

    def _need(self) -> None:
        if not self.can_capture:
            raise InvalidInput(role_advice(self._vault, "capture photos"))

    def _fields(self, patient, body_site, laterality, diagnosis) -> dict:
        self._need()
        if self._cam is None:
            raise InvalidInput("no camera is connected: plug it in, switch it on, and press refresh "
                               "(on Linux see the README's tethering notes)")
        if not isinstance(patient, str) or not patient.strip():
            raise InvalidInput("type the patient's id (MRN) before taking pictures")
        if not isinstance(body_site, str) or not body_site.strip():
            raise InvalidInput("type the body site (e.g. forearm) before taking pictures")
        if laterality not in LATERALITIES and laterality is not None:
            raise InvalidInput(f"laterality is one of: {', '.join(x for x in LATERALITIES if x)}")
        return dict(patient=patient.strip(), body_site=body_site.strip(), laterality=laterality or None,
                    diagnosis=(diagnosis or "").strip() or None)

    # -- shots -------------------------------------------------------------------------

    def _peek(self, ext: str, data: bytes) -> None:
        """Keep a small JPEG of the shot (not of its raw file) to show; nothing is written anywhere."""
        if ext in RAW_EXTENSIONS:
            return
        try:
            self._last = _imageio.render_preview(data, PREVIEW_SIDE)[0]
        except WorkbenchError:
            self._last = None  # the ingest says what is wrong with it

    @staticmethod
    def _shot(n: int, entry) -> dict:
        kind = "raw" if entry.file.lower().endswith(tuple(RAW_EXTENSIONS)) else "photo"
        return {"n": n, "kind": kind, "status": entry.status, "photo_id": entry.photo_id,
                "verified": bool(entry.verified), "removed": bool(entry.removed),
                "error": None if entry.error is None else str(entry.error)}

    def _progress(self, _done, _total, entry) -> None:
        self._entries.append(entry)
        self._update()
        shot = self.shots[-1]
        if shot["kind"] == "photo":
            self._resend()
        self._fire("shot", dict(shot))

    def _update(self) -> None:
        """The list of shots, as the entries stand now (files leave the camera after their run's batch)."""
        self.shots = [self._shot(n, e) for n, e in enumerate(self._entries, start=1)]

    def _resend(self) -> None:
        self._send_image("last", self._last)

    def _run(self, fields: dict, **kw) -> None:
        with self._lock:
            self.busy = True
            try:
                report = capture(self._vault, self._cam, keep_on_camera=self._keep, target=self._target,
                                 progress=self._progress, preview=self._peek, **fields, **kw)
                self._target = None  # set once
                self.status = report.summary().splitlines()[0]
            finally:
                self._update()
                self.busy = False

    @action
    def capture(self, patient: str, body_site: str, laterality: str | None = None,
                diagnosis: str | None = None, count: int = 1) -> None:
        """Take ``count`` pictures now, each straight into the vault."""
        fields = self._fields(patient, body_site, laterality, diagnosis)
        if self.watching:
            raise InvalidInput("the panel is watching the camera's shutter: stop watching to take pictures from here")
        if not isinstance(count, int) or not 1 <= count <= 100:
            raise InvalidInput("take between 1 and 100 pictures at a time")
        self._run(fields, count=count)

    @action
    def watch(self, patient: str, body_site: str, laterality: str | None = None,
              diagnosis: str | None = None, poll: float = 0.5) -> None:
        """Pull in each picture the camera's own shutter takes, in the background, until :meth:`stop`."""
        fields = self._fields(patient, body_site, laterality, diagnosis)
        if self.watching:
            raise InvalidInput("already watching")
        _require_capture_consent(self._vault, fields["patient"])  # refused here, not in the thread
        self._stop.clear()
        self.watching = True
        self.status = "watching the camera: press its shutter; stop when done"

        def run():
            try:
                self._run(fields, count=None, watch=True, poll=poll, stop=self._stop.is_set)
            except WorkbenchError as exc:
                self.error = str(exc)
            finally:
                self.watching = False

        self._thread = threading.Thread(target=run, name="workbench-capture-watch", daemon=True)
        self._thread.start()

    @action
    def stop(self) -> None:
        """Stop watching (the shot being stored is finished first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.watching = False
