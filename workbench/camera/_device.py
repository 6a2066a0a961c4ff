"""A camera reached through libgphoto2: find it, list, download, capture, delete.

Every call that talks to the camera goes through :meth:`Camera._call`, which
retries a busy camera with backoff and turns any other libgphoto2 failure into
a :class:`~workbench.errors.CameraError` that says what happened and what to
do. ``gphoto2`` is imported on first use, not with the package: its choice of
I/O libraries (the virtual camera when ``VCAMERADIR`` is set) is made at
import.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from ..errors import CameraError, InvalidInput, NotFound

#: seconds slept before each retry of a busy camera (then the call fails)
BUSY_BACKOFF = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2)

# libgphoto2's result codes (gphoto2-result.h, gphoto2-port-result.h)
_BUSY = -110
_NO_SPACE = -115
_NOT_SUPPORTED = -6
_FILE_NOT_FOUND = -108
#: the camera went away or cannot be reached: I/O, timeout, unplugged, claimed elsewhere
_GONE = frozenset({-7, -10, -31, -34, -35, -52, -53, -60, -105})
_CLAIMED = -53


def _gp():
    import gphoto2

    return gphoto2


def _advice(code: int, doing: str) -> tuple[str, bool]:
    """The message for a libgphoto2 failure while ``doing``, and whether the camera is gone."""
    if code == _BUSY:
        return (f"the camera stayed busy while {doing}, also after retrying; wait until it "
                "finishes writing, then run the command again"), False
    if code == _NO_SPACE:
        return (f"the camera's card is full ({doing}); import and clear it with "
                "`workbench import-card --camera --remove`, or capture to the camera's RAM "
                "(--target ram), then run the command again"), False
    if code == _CLAIMED:
        return (f"another program holds the camera ({doing}); stop the desktop's auto-mounter "
                "(see the README's tethering notes) and run the command again"), True
    if code in _GONE:
        return (f"the camera stopped answering while {doing} (unplugged, switched off or asleep); "
                "nothing on it was deleted: reconnect it and run the command again, which "
                "continues where this one stopped"), True
    if code == _NOT_SUPPORTED:
        return f"this camera (or its driver) cannot do that ({doing})", False
    if code == _FILE_NOT_FOUND:
        return f"the file is no longer on the camera ({doing})", False
    return (f"the camera reported an error while {doing} (libgphoto2 code {code}); check the "
            "camera and run the command again"), False


@dataclass(frozen=True)
class CameraFile:
    """A file on a camera or card: its folder and name there, and its size in bytes."""

    folder: str
    name: str
    size: int | None = None

    @property
    def path(self) -> str:
        return f"{self.folder.rstrip('/')}/{self.name}"


def list_cameras() -> list[tuple[str, str]]:
    """The cameras libgphoto2 finds connected now, as ``(model, port)`` pairs.

    A card folder reached through libgphoto2's "Directory Browse" driver is
    never listed: name it as ``disk:/path``.

    Returns
    -------
    list of (str, str)
        E.g. ``[("Canon EOS R6", "usb:001,007")]``.
    """
    gp = _gp()
    try:
        found = gp.Camera.autodetect()
    except gp.GPhoto2Error as exc:
        raise CameraError(_advice(exc.code, "looking for cameras")[0], code=exc.code) from None
    return [(found.get_name(i), found.get_value(i)) for i in range(found.count())]


def open_camera(select: str | None = None, *, sleep: Callable[[float], None] = time.sleep) -> "Camera":
    """Connect to one camera.

    Parameters
    ----------
    select : str, optional
        A port (``usb:001,007``; ``disk:/media/card`` for a card folder read
        through libgphoto2's "Directory Browse" driver) or a model name, or
        part of one (``"EOS R6"``). Needed only when several cameras are
        connected.
    sleep : callable
        Waits between retries of a busy camera (tests pass a fake).

    Returns
    -------
    Camera
        Use it as a context manager; leaving it releases the camera.

    Raises
    ------
    NotFound
        No camera matches (or none is connected).
    InvalidInput
        Several cameras match and ``select`` does not pick one.
    CameraError
        The camera is found but cannot be opened (held by another program).
    """
    gp = _gp()
    if select and select.startswith("disk:"):
        model, port = "Directory Browse", select
    else:
        cameras = list_cameras()
        if select:
            matches = [c for c in cameras if select in (c[1], c[0])] or \
                      [c for c in cameras if select.lower() in c[0].lower()]
        else:
            matches = cameras
        if not matches:
            raise NotFound(
                "no camera found" + (" that matches --camera" if select else "") + ": check the "
                "cable, that the camera is on and in PC-connection mode, and that the desktop's "
                "auto-mounter does not hold it (see the README's tethering notes)",
                cameras=cameras,
            )
        if len(matches) > 1:
            listed = "; ".join(f"{m} at {p}" for m, p in matches)
            raise InvalidInput(f"several cameras are connected ({listed}); pick one with "
                               "--camera MODEL_OR_PORT", cameras=matches)
        model, port = matches[0]
    handle = gp.Camera()
    abilities = gp.CameraAbilitiesList()
    abilities.load()
    ports = gp.PortInfoList()
    ports.load()
    try:
        handle.set_abilities(abilities[abilities.lookup_model(model)])
        handle.set_port_info(ports[ports.lookup_path(port)])
    except gp.GPhoto2Error as exc:
        raise NotFound(f"libgphoto2 does not know the camera or port named ({exc.string}); "
                       "list connected cameras with `gphoto2 --auto-detect`", code=exc.code) from None
    camera = Camera(handle, model, port, sleep=sleep)
    camera._call("connecting to the camera", handle.init)
    return camera


class Camera:
    """A connected camera (from :func:`open_camera`).

    Attributes
    ----------
    model, port : str
        As libgphoto2 names them (not identifying; a camera's serial number
        is, and is never read here).
    """

    def __init__(self, handle, model: str, port: str, *, sleep: Callable[[float], None] = time.sleep):
        self._handle = handle
        self.model = model
        self.port = port
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Camera {self.model!r} at {self.port!r}>"

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the camera (other programs may use it again)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                handle.exit()
            except _gp().GPhoto2Error:
                pass  # a camera that is already gone needs no release

    def _call(self, doing: str, fn, *args):
        """``fn(*args)``, retrying a busy camera; a failure becomes a ``CameraError``."""
        if self._handle is None:
            raise InvalidInput("this camera was closed; open it again with open_camera")
        gp = _gp()
        for wait in BUSY_BACKOFF + (None,):
            try:
                return fn(*args)
            except gp.GPhoto2Error as exc:
                if exc.code == _BUSY and wait is not None:
                    self._sleep(wait)
                    continue
                message, gone = _advice(exc.code, doing)
                raise CameraError(message, code=exc.code, gone=gone) from None

    @property
    def can_capture(self) -> bool:
        """Whether the camera's driver can take a picture on command."""
        gp = _gp()
        return bool(self._handle.get_abilities().operations & gp.GP_OPERATION_CAPTURE_IMAGE)

    def status(self) -> dict:
        """What a photographer checks before a session: model, port, battery, free space.

        Returns
        -------
        dict
            ``model``, ``port``, ``battery`` (the camera's own text, or None)
            and ``free_mb`` (free space on its storage, or None when the
            camera does not say).
        """
        gp = _gp()
        out = {"model": self.model, "port": self.port, "battery": None, "free_mb": None}
        try:
            config = self._handle.get_config()
            out["battery"] = config.get_child_by_name("batterylevel").get_value()
        except gp.GPhoto2Error:
            pass  # not every camera reports one
        try:
            out["free_mb"] = sum(s.freekbytes for s in self._handle.get_storageinfo()) // 1024
        except gp.GPhoto2Error:
            pass
        return out

    def set_target(self, target: str) -> None:
        """Where the camera keeps what it captures: ``"ram"`` (nothing left on its card) or ``"card"``."""
        if target not in ("ram", "card"):
            raise InvalidInput("the capture target is 'ram' or 'card'")
        config = self._call("reading the camera's settings", self._handle.get_config)
        gp = _gp()
        try:
            widget = config.get_child_by_name("capturetarget")
        except gp.GPhoto2Error:
            raise CameraError("this camera has no capture-target setting; leave out --target",
                              code=_NOT_SUPPORTED) from None
        wanted = "ram" if target == "ram" else "card"
        for choice in widget.get_choices():
            if wanted in choice.lower() or (wanted == "card" and "memory" in choice.lower()):
                widget.set_value(choice)
                self._call("setting the capture target", self._handle.set_config, config)
                return
        raise CameraError(f"this camera offers no '{target}' capture target", code=_NOT_SUPPORTED)

    def files(self, folder: str = "/") -> list[CameraFile]:
        """Every file on the camera under ``folder``, depth first, in name order."""
        out: list[CameraFile] = []
        names = self._call("listing the camera's files", self._handle.folder_list_files, folder)
        for i in range(names.count()):
            name = names.get_name(i)
            out.append(CameraFile(folder, name, None))
            out[-1] = CameraFile(folder, name, self.size(out[-1]))
        subfolders = self._call("listing the camera's folders", self._handle.folder_list_folders, folder)
        for i in sorted(range(subfolders.count()), key=subfolders.get_name):
            out.extend(self.files(f"{folder.rstrip('/')}/{subfolders.get_name(i)}"))
        out.sort(key=lambda f: (f.folder, f.name))
        return out

    def size(self, file: CameraFile) -> int:
        """A file's size in bytes, as the camera reports it now."""
        info = self._call("reading a file's size", self._handle.file_get_info, file.folder, file.name)
        return int(info.file.size)

    def download(self, file: CameraFile) -> bytes:
        """A file's bytes, in memory (never written to disk).

        A download that comes back shorter than the camera said the file is
        (the connection dropped mid-transfer) is a ``CameraError``.
        """
        gp = _gp()
        if file.size is None:
            file = CameraFile(file.folder, file.name, self.size(file))
        held = self._call("downloading a file", self._handle.file_get, file.folder, file.name,
                          gp.GP_FILE_TYPE_NORMAL)
        # the memoryview points into ``held``: copy it out while ``held`` lives
        data = bytes(memoryview(held.get_data_and_size()))
        if file.size is not None and len(data) != file.size:
            raise CameraError("a download from the camera came back short (the connection "
                              "dropped mid-transfer); nothing on the camera was deleted: run "
                              "the command again", code=-34, gone=True)
        return data

    def delete(self, file: CameraFile) -> None:
        """Delete a file from the camera."""
        self._call("deleting a file from the camera", self._handle.file_delete, file.folder, file.name)

    def capture(self) -> CameraFile:
        """Take one picture; returns the file the camera wrote (the first, for RAW+JPEG)."""
        gp = _gp()
        path = self._call("capturing", self._handle.capture, gp.GP_CAPTURE_IMAGE)
        return CameraFile(path.folder, path.name)

    def wait_for_file(self, timeout: float) -> CameraFile | None:
        """The next file the camera adds within ``timeout`` seconds (shutter pressed), or None."""
        gp = _gp()
        deadline = time.monotonic() + timeout
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            kind, data = self._call("waiting for the camera", self._handle.wait_for_event, left)
            if kind == gp.GP_EVENT_FILE_ADDED:
                return CameraFile(data.folder, data.name)
            if kind == gp.GP_EVENT_TIMEOUT or left == 0:
                return None
