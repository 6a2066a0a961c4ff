"""What every widget of the workbench shares: JSON state, actions, images over the comm.

A widget here is an ``anywidget.AnyWidget`` whose JavaScript and CSS are
files of this package (nothing is fetched from a network). Its synced
traits hold plain JSON only: ids, boxes, kinds, states, messages. Pixels
go to the browser as custom messages with binary buffers
(:meth:`_Widget._send_image`), never as a trait, so the widget state that
JupyterLab can save into a notebook never holds an image; identifiers
typed into a form travel the same way and are not kept.

The browser asks for an action with a custom message ``{"action": name,
"args": {...}}``; Python runs the method of that name if the widget lists
it marks with :func:`action`. Tests call the same methods, or set traits with
``set_state``, as the browser would.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import anywidget
import traitlets

from ..errors import WorkbenchError

_HERE = Path(__file__).parent


def module(name: str) -> str:
    """A widget's ES module: ``common.js`` (what every view shares) followed by ``name``."""
    return (_HERE / "common.js").read_text("utf-8") + "\n" + (_HERE / name).read_text("utf-8")


def action(fn: Callable) -> Callable:
    """Mark a method as an action the browser may ask for.

    It clears the error line first; a ``WorkbenchError`` it raises (a
    refusal, bad input, a conflict) becomes the error line and the method
    returns None, as the browser would show it. Nothing else is caught.
    """

    @functools.wraps(fn)
    def run(self, *args, **kw):
        self.error = ""
        try:
            return fn(self, *args, **kw)
        except WorkbenchError as exc:
            self.error = str(exc)
            return None

    run.is_action = True
    return run


class _Widget(anywidget.AnyWidget):
    """A thin widget: synced JSON traits, actions (see :func:`action`), a status line and an error line."""

    _css = _HERE / "widgets.css"
    #: what the widget is doing or did last (DOM: ``.wb-status``)
    status = traitlets.Unicode("").tag(sync=True)
    #: the last refusal or bad input, in words (DOM: ``.wb-error``); empty when fine
    error = traitlets.Unicode("").tag(sync=True)
    #: the vault user's role, and whether it may do this widget's work
    role = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kw):
        super().__init__(**kw)
        self._callbacks: dict[str, list[Callable]] = {}
        self.on_msg(self._on_browser_message)

    # -- browser -> Python -------------------------------------------------------

    def _on_browser_message(self, _widget, content, buffers) -> None:
        if not isinstance(content, dict):
            return
        action = content.get("action")
        args = content.get("args") or {}
        if action == "hello":  # a view (re)rendered: it has no pixels yet
            self._resend()
            return
        method = getattr(type(self), action, None) if isinstance(action, str) else None
        if not getattr(method, "is_action", False) or not isinstance(args, dict):
            self.error = f"unknown action {action!r}"
            return
        if buffers:
            args = {**args, "buffers": [bytes(b) for b in buffers]}
        try:
            getattr(self, action)(**args)
        except (TypeError, ValueError):
            self.error = f"the {action} request was not understood; nothing was changed"

    def _resend(self) -> None:
        """Send the images the view needs (a view that renders again has none)."""

    # -- Python -> browser -------------------------------------------------------

    def _send_image(self, slot: str, jpeg: bytes | None, **meta) -> None:
        """One image for ``slot`` over the comm (binary buffer), or None to clear it."""
        content = {"type": "image", "slot": slot, **meta}
        self.send(content, buffers=[jpeg] if jpeg else [])

    # -- callbacks -----------------------------------------------------------------

    def _on(self, event: str, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError("a callback is a function")
        self._callbacks.setdefault(event, []).append(fn)

    def _fire(self, event: str, payload) -> None:
        for fn in self._callbacks.get(event, []):
            fn(payload)
