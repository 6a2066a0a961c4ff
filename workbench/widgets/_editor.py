"""The redaction editor: see a photo's redaction, mark what the detectors missed, decide."""

from __future__ import annotations

from typing import Callable, Iterable

import traitlets

from ..errors import ConflictError, InvalidInput, WorkbenchError
from ..review import SHORTCUTS, PhotoView, require_reviewer, role_advice
from ..vault import REGION_KINDS, Vault
from ..vault._review import region_key
from ._base import _Widget, action, module


class RedactionEditor(_Widget):
    """Review the redaction of one photo or a list of photos, in a notebook.

    The photo is decrypted in memory and sent to the browser scaled for
    display; the detectors' proposed regions are drawn by kind and score
    (they are always redacted), and the regions a person marks are added
    on top. All boxes are ``[x, y, w, h]`` in the upright photo's full-size
    pixels, whatever the display size. Approving or rejecting saves one
    signed review in the vault (:meth:`Vault.save_review`), checked against
    the version the editor loaded: a save that someone else overtook is
    refused with what changed, and the editor keeps your regions.

    Parameters
    ----------
    vault : Vault
        Opened by a role that reviews redactions (admin, clinician, analyst).
        Other roles get a widget that says what they may do instead.
    photo_ids : str or iterable of str
        One photo id, or the photos to step through with next / previous.
    purpose : str, default ``"care"``
        Why the photos are looked at; a photo whose patient is not
        consented for it now is not shown.
    blind : bool, default False
        A second, blind review: the regions earlier reviewers marked are
        neither shown nor counted, and the proposed boxes are the
        detectors' alone. Your marks are saved *added to* theirs, so a
        blind review never uncovers what someone else hid, and
        :func:`workbench.review.review_figures` compares your regions with
        theirs (``region_agreement``).

    Notes
    -----
    In the browser: drag on the photo (``.wb-editor-surface``) to draw a box,
    drag a box to move it, its corner handle to resize it; click a proposed
    box's label (or press Tab) to pick it and ``x`` to dismiss it; click the
    label of a box left visible as slough (``.wb-left-visible-label``) to
    mark it as a face; buttons
    ``.wb-approve``, ``.wb-reject``, ``.wb-next``, ``.wb-prev``; the status
    line ``.wb-status``. Keys: see :data:`workbench.review.SHORTCUTS`.
    """

    _esm = module("editor.js")

    photo_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    index = traitlets.Int(0).tag(sync=True)
    photo_id = traitlets.Unicode("").tag(sync=True)
    #: the upright photo's full size, and the size it is displayed at
    image_size = traitlets.List([0, 0]).tag(sync=True)
    display_size = traitlets.List([0, 0]).tag(sync=True)
    #: the detectors' regions: ``{"kind", "box", "score", "detector"}`` (read-only)
    proposed = traitlets.List().tag(sync=True)
    #: face boxes the detectors left visible as slough in a wound (``{"kind", "box",
    #: "score"}``, read-only): drawn apart; clicking one's label marks it as a face
    #: (:meth:`draw`), which hides it in every build
    left_visible = traitlets.List().tag(sync=True)
    verified = traitlets.Any(None).tag(sync=True)
    #: the regions a person marked: ``{"kind", "box", "author"?, "time"?}``, and
    #: ``"dismissed": true`` on a proposed box judged not identifying
    regions = traitlets.List().tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)
    #: the proposed box picked for dismissing (-1: none)
    picked = traitlets.Int(-1).tag(sync=True)
    #: the kind given to new boxes (and set on the selected one by keys 1-6)
    kind = traitlets.Unicode("tattoo").tag(sync=True)
    kinds = traitlets.List(list(REGION_KINDS)).tag(sync=True)
    #: the review the editor started from: its version, state and reason
    version = traitlets.Int(0).tag(sync=True)
    state = traitlets.Unicode("unreviewed").tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    dirty = traitlets.Bool(False).tag(sync=True)
    redacted_preview = traitlets.Bool(False).tag(sync=True)
    #: the full-resolution part shown (``[x, y, w, h]``), empty for the whole photo
    zoom_box = traitlets.List().tag(sync=True)
    #: what overtook your save (see ConflictError), empty when none
    conflict = traitlets.Dict().tag(sync=True)
    can_review = traitlets.Bool(False).tag(sync=True)
    shortcuts = traitlets.List([list(s) for s in SHORTCUTS]).tag(sync=True)
    blind = traitlets.Bool(False).tag(sync=True)

    def __init__(self, vault: Vault, photo_ids: str | Iterable[str], *, purpose: str = "care",
                 blind: bool = False):
        ids = [photo_ids] if isinstance(photo_ids, str) else list(photo_ids)
        super().__init__(photo_ids=ids, role=vault.role, blind=bool(blind))
        self._vault = vault
        self._purpose = purpose
        self._view: PhotoView | None = None
        self._others: list[dict] = []  # blind: the regions others marked, kept out of sight
        self.observe(self._on_regions, names="regions")
        try:
            require_reviewer(vault)
        except WorkbenchError as exc:  # an AccessDenied: say so, open nothing
            self.error = str(exc)
            self.status = role_advice(vault, "review redactions")
            return
        self.can_review = True
        if not ids:
            self.status = "no photos to review"
            return
        try:
            self._open(0)
        except WorkbenchError as exc:  # e.g. consent withdrawn: say so; next still works
            self.error = str(exc)

    # -- callbacks ------------------------------------------------------------------

    def on_save(self, fn: Callable[[dict], None]) -> None:
        """Call ``fn(review)`` after each successful save (the :class:`Review` as JSON)."""
        self._on("save", fn)

    def on_photo(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(photo_id)`` each time another photo is shown."""
        self._on("photo", fn)

    # -- loading ----------------------------------------------------------------------

    def _open(self, index: int) -> bool:
        photo_id = self.photo_ids[index]
        view = PhotoView.open(self._vault, photo_id, purpose=self._purpose)  # may raise: nothing changes
        review = self._vault.review(photo_id)
        self._view = view
        with self.hold_sync():
            self.index = index
            self.photo_id = photo_id
            self.image_size = list(view.size)
            self.display_size = list(view.display)
            self.proposed = view.proposed
            self.left_visible = view.left_visible
            self.verified = view.verified
            self._load_review(review)
            self.selected = -1
            self.picked = -1
            self.zoom_box = []
            self.redacted_preview = False
            self.conflict = {}
            self.status = (f"photo {index + 1} of {len(self.photo_ids)}: {review.state}"
                           f"{' (version ' + str(review.version) + ')' if review.version else ''}; "
                           f"{len(view.proposed)} proposed, {len(self.regions)} marked")
        self._resend()
        self._fire("photo", photo_id)
        return True

    def _load_review(self, review) -> None:
        self.version = review.version
        self.state = review.state
        self.reason = review.reason or ""
        regions = [dict(r) for r in review.to_json()["regions"]]
        if self.blind:  # yours are shown; everyone else's are kept, unseen, and saved with yours
            self._others = [r for r in regions if r.get("author") != self._vault.user]
            regions = [r for r in regions if r.get("author") == self._vault.user]
            self.state, self.reason = "second review", ""  # the decision before yours is not shown
        self._set_regions(regions)
        self.dirty = False

    def _set_regions(self, regions: list[dict]) -> None:
        self._quiet = True
        try:
            self.regions = regions
        finally:
            self._quiet = False

    def _resend(self) -> None:
        if self._view is None:
            return
        if self.zoom_box:
            jpeg, box = self._view.zoom(self.zoom_box)
            self._send_image("photo", jpeg, photo_id=self.photo_id, box=box)
        elif self.redacted_preview:
            self._send_image("photo", self._view.redacted(self.regions), photo_id=self.photo_id,
                             box=[0, 0, *self.image_size])
        else:
            self._send_image("photo", self._view.jpeg, photo_id=self.photo_id, box=[0, 0, *self.image_size])

    # -- regions -------------------------------------------------------------------------

    def _clean(self, region) -> dict | None:
        """A region as the vault will store it: kind checked, box turned round and clipped; None if empty."""
        if not isinstance(region, dict) or region.get("kind") not in REGION_KINDS:
            raise InvalidInput(f"a region's kind is one of: {', '.join(REGION_KINDS)}")
        try:
            x, y, w, h = (float(v) for v in region.get("box", ()))
        except (TypeError, ValueError):
            raise InvalidInput("a box is four numbers [x, y, width, height] in the photo's pixels") from None
        x0, x1 = sorted((x, x + w))
        y0, y1 = sorted((y, y + h))
        W, H = self.image_size
        x0, y0 = max(0, round(x0)), max(0, round(y0))
        x1, y1 = min(W, round(x1)), min(H, round(y1))
        if x1 <= x0 or y1 <= y0:
            return None
        out = {k: v for k, v in region.items() if k in ("author", "time")}
        same = [round(v) for v in (x, y, w, h)] == [x0, y0, x1 - x0, y1 - y0]
        if not same:  # a changed box is a new mark: it gets its author on save
            out = {}
        if region.get("dismissed") is True:
            out["dismissed"] = True
        return {"kind": region["kind"], "box": [x0, y0, x1 - x0, y1 - y0], **out}

    def _on_regions(self, change) -> None:
        """Regions set from the browser (a move or resize) are cleaned like any other."""
        if getattr(self, "_quiet", False):
            return
        try:
            cleaned = [r for r in (self._clean(r) for r in change["new"]) if r is not None]
        except InvalidInput as exc:
            self.error = str(exc)
            self._set_regions(change["old"])
            return
        if cleaned != change["new"]:
            self._set_regions(cleaned)
        self.dirty = True
        if self.selected >= len(self.regions):
            self.selected = -1
        self._refresh_preview()

    def _edit(self, regions: list[dict], selected: int, status: str) -> None:
        self._set_regions(regions)
        self.selected = selected
        self.dirty = True
        self.status = status
        self._refresh_preview()

    def _refresh_preview(self) -> None:
        if self.redacted_preview and not self.zoom_box:
            self._resend()

    def _need_photo(self) -> None:
        if not self.can_review:
            require_reviewer(self._vault)
        if self._view is None:
            raise InvalidInput("no photo is open")

    def _index_ok(self, index) -> int:
        if not isinstance(index, int) or not 0 <= index < len(self.regions):
            raise InvalidInput(f"there is no marked box number {index}; select one of the "
                               f"{len(self.regions)} boxes you marked (a proposed box is picked with Tab and dismissed with x)")
        return index

    @action
    def draw(self, box, kind: str | None = None) -> int | None:
        """Mark a new box (``[x, y, w, h]`` in full-size pixels); returns its index.

        A box partly outside the photo is clipped to it; an empty one is
        ignored (the status line says so).
        """
        self._need_photo()
        kind = kind or self.kind
        region = self._clean({"kind": kind, "box": box})
        if region is None:
            self.status = "an empty box (or one outside the photo) was ignored"
            return None
        self._edit(self.regions + [region], len(self.regions), f"marked a {kind} box at {region['box']}")
        return self.selected

    @action
    def select(self, index: int = -1) -> None:
        """Select a marked box (-1: none)."""
        self.selected = -1 if index == -1 else self._index_ok(index)

    @action
    def set_box(self, index: int, box) -> None:
        """Move or resize a marked box (its new ``[x, y, w, h]``); an empty result deletes it."""
        self._need_photo()
        index = self._index_ok(index)
        self._not_dismissed(index, "moved or resized")
        region = self._clean({"kind": self.regions[index]["kind"], "box": box})
        regions = list(self.regions)
        if region is None:
            del regions[index]
            self._edit(regions, -1, "the box became empty and was removed")
            return
        regions[index] = region
        self._edit(regions, index, f"box {index + 1} is now at {region['box']}")

    @action
    def delete(self, index: int | None = None) -> None:
        """Delete a marked box (default: the selected one)."""
        self._need_photo()
        index = self._index_ok(self.selected if index is None else index)
        regions = list(self.regions)
        gone = regions.pop(index)
        self._edit(regions, -1, f"deleted the {gone['kind']} box at {gone['box']}")

    def _not_dismissed(self, index: int, what: str) -> None:
        if self.regions[index].get("dismissed"):
            raise InvalidInput(f"box {index + 1} is a dismissed detector box and cannot be {what}: delete "
                               "it to hide the detection again, then draw a box of your own")

    @action
    def pick(self, index: int | None = None) -> None:
        """Pick proposed box ``index`` for :meth:`dismiss` (default: the next one; -1: none)."""
        self._need_photo()
        if not self.proposed:
            raise InvalidInput("no box was proposed on this photo: there is nothing to dismiss")
        if index is None:
            index = (self.picked + 1) % len(self.proposed)
        if not isinstance(index, int) or not -1 <= index < len(self.proposed):
            raise InvalidInput(f"there is no proposed box number {index}; pick one of the "
                               f"{len(self.proposed)} proposed boxes")
        self.picked = index
        if index >= 0:
            p = self.proposed[index]
            self.status = (f"picked the proposed {p['kind']} box at {p['box']} (score "
                           f"{float(p.get('score', 1)):.2f}): x dismisses it if it hides no identifier")

    @action
    def dismiss(self, index: int | None = None) -> None:
        """Dismiss proposed box ``index`` (default: the picked one): it hides no identifier.

        The box is added to the regions as ``"dismissed": true``; once the
        photo is approved, builds leave that detection visible and say so.
        Dismissing it again (or deleting the dismissed box) takes it back.
        """
        self._need_photo()
        index = self.picked if index is None else index
        if not isinstance(index, int) or not 0 <= index < len(self.proposed):
            raise InvalidInput("pick a proposed box first (click its label, or press Tab), then dismiss it")
        p = self.proposed[index]
        mark = {"kind": p["kind"], "box": [int(v) for v in p["box"]], "dismissed": True}
        regions = [r for r in self.regions if region_key(r) != region_key(mark)]
        same = len(regions) < len(self.regions)
        if same:
            self._edit(regions, -1, f"the proposed {p['kind']} box at {mark['box']} is hidden again")
        else:
            self._edit(regions + [mark], -1, f"dismissed the proposed {p['kind']} box at {mark['box']}: "
                       "approve to leave it visible in builds")

    @action
    def set_kind(self, kind: str, index: int | None = None) -> None:
        """Set the kind of new boxes, and of box ``index`` (default: the selected one, if any)."""
        if kind not in REGION_KINDS:
            raise InvalidInput(f"a region's kind is one of: {', '.join(REGION_KINDS)}")
        self.kind = kind
        index = self.selected if index is None else self._index_ok(index)
        if index >= 0 and self._view is not None:
            self._not_dismissed(index, "given another kind")
            regions = list(self.regions)
            regions[index] = {"kind": kind, "box": list(regions[index]["box"])}
            self._edit(regions, index, f"box {index + 1} is now a {kind}")
        else:
            self.status = f"new boxes are {kind}"

    @action
    def zoom(self, box=None) -> None:
        """Show a part at full resolution (default: the selected box); again, or ``[]``: the whole photo."""
        self._need_photo()
        if box is None:
            if self.zoom_box:
                box = []
            elif self.selected >= 0:
                box = self.regions[self.selected]["box"]
            else:
                raise InvalidInput("select a box to zoom on (or give one)")
        if box:
            x, y, w, h = (float(v) for v in box)
            pad_w, pad_h = w * 0.5, h * 0.5  # some context around the box
            self.zoom_box = [x - pad_w, y - pad_h, w + 2 * pad_w, h + 2 * pad_h]
            jpeg, shown = self._view.zoom(self.zoom_box)
            self.zoom_box = shown
            self._send_image("photo", jpeg, photo_id=self.photo_id, box=shown)
            self.status = f"full resolution on {shown}"
        else:
            self.zoom_box = []
            self._resend()
            self.status = "whole photo"

    @action
    def toggle_preview(self) -> None:
        """Show (or stop showing) the photo as a build would redact it."""
        self._need_photo()
        self.redacted_preview = not self.redacted_preview
        self.zoom_box = []
        self._resend()
        self.status = "preview of the redacted result" if self.redacted_preview else "the photo as taken"

    # -- decisions -------------------------------------------------------------------------

    def _save(self, state: str, reason: str | None) -> dict | None:
        self._need_photo()
        reason = self.reason if reason is None else reason
        regions = list(self.regions)
        if self.blind:
            mine = {region_key(r) for r in regions}
            regions += [r for r in self._others if region_key(r) not in mine]
        try:
            review = self._vault.save_review(self.photo_id, based_on=self.version, state=state,
                                             regions=regions, reason=reason or None)
        except ConflictError as exc:
            self.conflict = {"version": exc.version, "changes": exc.changes}
            raise
        self._load_review(review)
        self.conflict = {}
        self.status = f"saved: {review.state} (version {review.version}, {len(review.regions)} marked)"
        payload = review.to_json()
        self._fire("save", payload)
        return payload

    @action
    def save(self) -> dict | None:
        """Save the marked regions as a draft (state ``in_review``) without deciding."""
        return self._save("in_review", None)

    @action
    def approve(self, reason: str | None = None) -> dict | None:
        """Approve this photo's redaction with the marked regions, and go to the next photo."""
        saved = self._save("approved", reason)
        self._advance()
        return saved

    @action
    def reject(self, reason: str | None = None) -> dict | None:
        """Reject this photo's redaction (say why in ``reason``), and go to the next photo."""
        reason = self.reason if reason is None else reason
        if not reason or not reason.strip():
            raise InvalidInput("say why the redaction is rejected (type a reason), then reject again")
        saved = self._save("rejected", reason)
        self._advance()
        return saved

    def _advance(self) -> None:
        if self.index + 1 < len(self.photo_ids):
            status = self.status
            try:
                self._open(self.index + 1)
            except WorkbenchError as exc:  # the save stands; the next photo cannot be shown
                self.error = str(exc)
                self.index += 1
                return
            self.status = status + "; " + self.status

    @action
    def keep_mine(self) -> None:
        """After a conflict: base your regions on the newer version, to save them over it."""
        if not self.conflict:
            raise InvalidInput("there is no conflict to resolve")
        self.version = int(self.conflict["version"])
        self.conflict = {}
        self.status = f"your regions are now based on version {self.version}: approve, reject or save again"

    @action
    def load_theirs(self) -> None:
        """After a conflict: drop your changes and load the newer version."""
        self._need_photo()
        self._load_review(self._vault.review(self.photo_id))
        self.conflict = {}
        self.status = f"loaded version {self.version} ({self.state})"
        self._refresh_preview()

    # -- moving -------------------------------------------------------------------------------

    def _go(self, index: int) -> None:
        if not self.can_review:
            require_reviewer(self._vault)
        if not 0 <= index < len(self.photo_ids):
            self.status = "that was the last photo" if index > 0 else "that was the first photo"
            return
        if self.dirty and self._view is not None:  # nothing is lost on the way: unsaved marks become a draft
            self._save("in_review", None)
        try:
            self._open(index)
        except WorkbenchError:
            self._view = None  # not shown: nothing of it may be edited
            with self.hold_sync():
                self.index, self.photo_id = index, self.photo_ids[index]
                self.proposed, self.verified, self.zoom_box, self.conflict = [], None, [], {}
                self._set_regions([])
                self.version, self.state, self.reason, self.dirty, self.selected = 0, "", "", False, -1
                self.status = f"photo {index + 1} of {len(self.photo_ids)} cannot be shown (see below)"
            self._send_image("photo", None, photo_id=self.photo_id)
            raise

    @action
    def next(self) -> None:
        """The next photo (unsaved marks are saved as a draft first)."""
        self._go(self.index + 1)

    @action
    def previous(self) -> None:
        """The previous photo (unsaved marks are saved as a draft first)."""
        self._go(self.index - 1)

    @action
    def go(self, index: int) -> None:
        """Photo number ``index`` (0-based) of the list."""
        self._go(int(index))
