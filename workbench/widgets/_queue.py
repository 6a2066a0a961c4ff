"""The review queue: riskiest redactions first, original and redacted side by side."""

from __future__ import annotations

from typing import Callable

import traitlets

from ..errors import InvalidInput, WorkbenchError
from ..review import PhotoView, redacted_jpeg, require_reviewer, review_figures, risk_queue, role_advice
from ..vault import Vault
from ._base import _Widget, action, module


class ReviewQueue(_Widget):
    """An analyst's queue of redactions to check, riskiest first.

    The queue (:func:`workbench.review.risk_queue`) puts first the photos
    never reviewed, whose output failed verification, with low-confidence
    detections or regions near the size limits; a share ``second_share`` of
    approved photos comes back for a second, blind review by someone else:
    the widget does not show who approved them or why, and its redacted side
    shows the automatic redaction only, without the regions the first
    reviewer marked (open such photos in ``RedactionEditor(..., blind=True)``
    to mark your own). For each other photo it shows the original and the
    stored redacted version side by side; you
    accept it (approved) or send it back (rejected, with a reason), and the
    next one comes. ``figures`` reports agreement between reviewers,
    corrections by kind and time per photo (:func:`workbench.review.review_figures`).

    Parameters
    ----------
    vault : Vault
        Opened by a role that reviews redactions (admin, clinician, analyst).
    purpose : str, default ``"care"``
    second_share : float, default 0.1
        Share of approved photos drawn for a second review.
    """

    _esm = module("queue.js")

    #: ``{"photo_id", "risk", "reasons", "state", "second_review", "body_site"}`` per photo, riskiest first
    items = traitlets.List().tag(sync=True)
    index = traitlets.Int(0).tag(sync=True)
    photo_id = traitlets.Unicode("").tag(sync=True)
    second_share = traitlets.Float(0.1).tag(sync=True)
    figures = traitlets.Dict().tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    can_review = traitlets.Bool(False).tag(sync=True)

    def __init__(self, vault: Vault, *, purpose: str = "care", second_share: float = 0.1):
        super().__init__(role=vault.role, second_share=float(second_share))
        self._vault = vault
        self._purpose = purpose
        self._images: dict[str, bytes | None] = {}
        try:
            require_reviewer(vault)
        except WorkbenchError as exc:
            self.error = str(exc)
            self.status = role_advice(vault, "review redactions")
            return
        self.can_review = True
        self.observe(lambda _: self.refresh(), names="second_share")
        self.refresh()

    def on_decision(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(review)`` after each accept or send back (the saved review as JSON)."""
        self._on("decision", fn)

    def photo_ids(self, *, second_review: bool | None = None) -> list[str]:
        """The queue's photo ids, riskiest first (to open them in a :class:`RedactionEditor`).

        ``second_review=True`` gives only the photos drawn for a second, blind
        review (for ``RedactionEditor(vault, ids, blind=True)``), False only the others.
        """
        return [item["photo_id"] for item in self.items
                if second_review is None or item["second_review"] == second_review]

    @action
    def refresh(self) -> None:
        """Rank the photos again and show the first; recompute the figures."""
        if not 0 <= self.second_share <= 1:
            raise InvalidInput("second_share is a share between 0 and 1")
        frame = risk_queue(self._vault, purpose=self._purpose, second_share=self.second_share)
        self.items = [{**row, "reasons": list(row["reasons"])} for row in frame.to_dict("records")]
        self.figures = review_figures(self._vault.review_history())
        self._show(0)

    def _show(self, index: int) -> None:
        if not self.items:
            self.index, self.photo_id = 0, ""
            self._images = {}
            self.status = "nothing to review"
            self._resend()
            return
        index = max(0, min(index, len(self.items) - 1))
        photo_id = self.items[index]["photo_id"]
        view = PhotoView.open(self._vault, photo_id, purpose=self._purpose)
        blind = self.items[index]["second_review"]
        self._images = {"original": view.jpeg,
                        # blind: what the detectors hid, not what the first reviewer added
                        "redacted": view.redacted([]) if blind else
                        redacted_jpeg(self._vault, photo_id, purpose=self._purpose)}
        self.index, self.photo_id = index, photo_id
        item = self.items[index]
        self.status = (f"{index + 1} of {len(self.items)}: risk {item['risk']} "
                       f"({'; '.join(item['reasons']) or 'no particular risk'})")
        self._resend()

    def _resend(self) -> None:
        for slot in ("original", "redacted"):
            self._send_image(slot, self._images.get(slot), photo_id=self.photo_id)

    def _decide(self, state: str, reason: str | None) -> dict:
        if not self.can_review:
            require_reviewer(self._vault)
        if not self.photo_id:
            raise InvalidInput("the queue is empty")
        current = self._vault.review(self.photo_id)
        saved = self._vault.save_review(self.photo_id, based_on=current.version, state=state,
                                        reason=reason or None)
        payload = saved.to_json()
        self._fire("decision", payload)
        done = self.index
        self.items = self.items[:done] + self.items[done + 1:]
        self.figures = review_figures(self._vault.review_history())
        self.reason = ""
        message = f"{'accepted' if state == 'approved' else 'sent back'} (version {saved.version})"
        self._show(done)
        self.status = message + "; " + self.status
        return payload

    @action
    def accept(self, reason: str | None = None) -> dict | None:
        """Approve the redaction as it stands, and show the next photo."""
        return self._decide("approved", reason if reason is not None else self.reason)

    @action
    def send_back(self, reason: str | None = None) -> dict | None:
        """Send the redaction back (rejected) with a reason, and show the next photo."""
        reason = reason if reason is not None else self.reason
        if not reason or not reason.strip():
            raise InvalidInput("say why the redaction goes back (type a reason), then send it back")
        return self._decide("rejected", reason)

    @action
    def next(self) -> None:
        """The next photo of the queue."""
        self._show(self.index + 1)

    @action
    def previous(self) -> None:
        """The previous photo of the queue."""
        self._show(self.index - 1)

    @action
    def go(self, index: int) -> None:
        """Photo number ``index`` (0-based) of the queue."""
        if not isinstance(index, int) or not 0 <= index < len(self.items):
            raise InvalidInput(f"the queue has {len(self.items)} photo{'' if len(self.items) == 1 else 's'}")
        self._show(index)
