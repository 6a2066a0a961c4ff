"""Reviewing redactions: what the review widgets show and measure, without the widgets.

The widgets in :mod:`workbench.widgets` are thin: they hold JSON state and
call these functions, which read the vault (consent-filtered, audited) and
return plain data or small JPEGs held in memory. Identifiable pixels from
here go to the browser over a widget's comm only, never into a file.

- :class:`PhotoView`: one photo scaled for display, its upright size, the
  regions the detectors proposed, and, on demand, a full-resolution part
  (zoom) and a preview of the redacted result.
- :func:`risk_queue`: the photos an analyst should look at first, and why.
- :func:`review_figures`: agreement between reviewers, corrections by kind
  and time per photo, from the vault's review history.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from . import _imageio
from .deid import Policy, Region, grow
from .deid._pipeline import MORE_MAX_SHARE
from .deid._regions import REVIEW_FACE_SCORE, SLOUGH_MARK, iou, slough_boxes
from .errors import AccessDenied, InvalidInput
from .vault import REGION_KINDS, ROLE_HELP, Vault
from .vault._log import REVIEW_ROLES

#: longest side of the photo as the editor shows it (the regions stay in full-size pixels)
DISPLAY_SIDE = 1280
#: longest side of a zoomed part: full resolution up to this
ZOOM_SIDE = 1280
#: keyboard shortcuts of the redaction editor, as it shows them
SHORTCUTS = (
    ("drag", "draw a box (on the photo); drag a box to move it, its corner to resize it"),
    ("1-6", "set the kind of the selected box and of new boxes: " + ", ".join(
        f"{n} {kind}" for n, kind in enumerate(REGION_KINDS, start=1))),
    ("arrows", "move the selected box (with Shift: resize it)"),
    ("Delete", "delete the selected box"),
    ("Tab / x", "pick the next proposed box / dismiss it (it hides no identifier: left visible once approved)"),
    ("z", "zoom to full resolution on the selected box (again: whole photo)"),
    ("t", "toggle the preview of the redacted result"),
    ("s", "save the marks as a draft, without deciding"),
    ("a", "approve"),
    ("r", "reject (with the reason typed)"),
    ("n / p", "next / previous photo"),
)
#: a detector's region below this score is a low-confidence detection
LOW_SCORE = 0.5
#: a region smaller than this (pixels, either side) is near the lower size limit
SMALL_SIDE = 16


def role_advice(vault: Vault, wanted: str) -> str:
    """``the researcher role cannot review redactions (it may: ...)``: what a role may do instead."""
    return f"the {vault.role} role cannot {wanted}; it may: {ROLE_HELP.get(vault.role, 'nothing here')}"


def require_reviewer(vault: Vault) -> None:
    """Raise ``AccessDenied`` (saying what the role may do) unless the role reviews redactions."""
    if vault.role not in REVIEW_ROLES:
        raise AccessDenied(role_advice(vault, "review redactions") + "; the Gallery shows it "
                           "de-identified photos", role=vault.role)


def _jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class PhotoView:
    """One photo as the editor shows it (identifiable pixels, in memory only).

    Attributes
    ----------
    photo_id : str
    jpeg : bytes
        The upright photo scaled to at most :data:`DISPLAY_SIDE` (a JPEG with
        no metadata).
    size : tuple of int
        The upright photo's full width and height: regions are in these pixels.
    display : tuple of int
        The displayed width and height.
    proposed : list of dict
        The detectors' regions of the latest de-identified version
        (``kind``, ``box``, ``score``, ``detector``), in full-size pixels.
    verified : bool or None
        Whether that version verified (None: not de-identified yet).
    left_visible : list of dict
        Face boxes that version left visible as slough in a wound
        (``kind``, ``box``, ``score``; see ``deid.review_reasons``): the
        reviewer hides one that is a face by marking it.
    """

    photo_id: str
    jpeg: bytes
    size: tuple[int, int]
    display: tuple[int, int]
    proposed: list[dict] = field(default_factory=list)
    verified: bool | None = None
    left_visible: list[dict] = field(default_factory=list)
    _vault: Vault | None = field(default=None, repr=False)
    _purpose: str = "care"
    _full: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def open(cls, vault: Vault, photo_id: str, *, purpose: str = "care") -> "PhotoView":
        """Decrypt a photo's pixels in memory and scale them for display (audited).

        Raises
        ------
        AccessDenied
            The role has no originals key (said with what the role may do).
        ConsentError
            The photo's patient is not consented for ``purpose`` now.
        """
        require_reviewer(vault)
        data = vault._read_pixels_file(photo_id, "review redactions", purpose)
        jpeg, info = _imageio.render_preview(data, DISPLAY_SIDE)
        with Image.open(io.BytesIO(jpeg)) as shown:
            display = shown.size
        results = vault.deid_results([photo_id], purpose=purpose)
        proposed, verified, left_visible = [], None, []
        if len(results):
            row = results.iloc[-1]
            verified = bool(row["verified"])
            proposed = [dict(r) for r in row["regions"] if r.get("detector") != "manual"]
            left_visible = slough_boxes(row["warnings"])
        return cls(photo_id, jpeg, (info.width, info.height), display, proposed, verified, left_visible, vault,
                   purpose)

    @property
    def scale(self) -> float:
        """Displayed pixels per full-size pixel."""
        return self.display[0] / self.size[0]

    def full_pixels(self) -> np.ndarray:
        """The upright photo at full resolution (decoded once, on first use)."""
        if self._full is None:
            self._full = self._vault.load_original(self.photo_id, purpose=self._purpose)
        return self._full

    def zoom(self, box) -> tuple[bytes, list[int]]:
        """A part of the photo at full resolution (at most :data:`ZOOM_SIDE` on its long side).

        ``box`` is ``[x, y, w, h]`` in full-size pixels; it is clipped to the
        photo and grown to at least 64 pixels a side. Returns the JPEG and
        the box it shows.
        """
        x, y, w, h = _clipped(box, self.size)
        w, h = max(w, 64), max(h, 64)
        x, y = max(0, min(x, self.size[0] - w)), max(0, min(y, self.size[1] - h))
        w, h = min(w, self.size[0]), min(h, self.size[1])
        part = self.full_pixels()[y:y + h, x:x + w]
        if max(w, h) > ZOOM_SIDE:
            f = ZOOM_SIDE / max(w, h)
            part = np.asarray(Image.fromarray(part).resize((max(1, round(w * f)), max(1, round(h * f)))))
        return _jpeg(np.ascontiguousarray(part)), [x, y, w, h]

    def redacted(self, manual: list[dict], policy: Policy | None = None) -> bytes:
        """The displayed photo with the proposed and manual regions filled, as a build would.

        Proposed regions that ``manual`` dismisses are left visible.
        Proposed regions are the boxes the stored version hid (grown
        already); manual ones are grown by their kind's margin, as
        :func:`workbench.deid.deidentify` grows them (tattoo, birthmark and
        other boxes are used as drawn).
        """
        policy = policy or Policy()
        dismissed = {(r["kind"], tuple(r["box"])) for r in manual if r.get("dismissed")}
        hidden = [Region(r["kind"], tuple(r["box"]), float(r.get("score", 1.0)), r.get("detector", "manual"))
                  for r in self.proposed if (r["kind"], tuple(r["box"])) not in dismissed]
        hidden += grow([Region(r["kind"], tuple(r["box"])) for r in manual if not r.get("dismissed")],
                       policy, *self.size)
        with Image.open(io.BytesIO(self.jpeg)) as shown:
            canvas = shown.convert("RGB")
        draw = ImageDraw.Draw(canvas)
        s = self.scale
        for region in hidden:
            x, y, w, h = region.box
            draw.rectangle((math.floor(x * s), math.floor(y * s), math.ceil((x + w) * s) - 1,
                            math.ceil((y + h) * s) - 1), fill=tuple(policy.fill))
        return _jpeg(np.asarray(canvas))


def _clipped(box, size) -> list[int]:
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InvalidInput("a box is four numbers [x, y, width, height]") from None
    x0, x1 = sorted((x, x + w))
    y0, y1 = sorted((y, y + h))
    x0, y0 = max(0, int(x0)), max(0, int(y0))
    x1, y1 = min(size[0], int(math.ceil(x1))), min(size[1], int(math.ceil(y1)))
    return [x0, y0, max(0, x1 - x0), max(0, y1 - y0)]


def redacted_jpeg(vault: Vault, photo_id: str, *, purpose: str = "care", max_side: int = DISPLAY_SIDE) -> bytes | None:
    """The latest de-identified version of a photo, scaled for display (None when there is none)."""
    results = vault.deid_results([photo_id], purpose=purpose)
    if not len(results):
        return None
    data = vault.load_derivative(results.iloc[-1]["blob_id"], purpose=purpose)
    return _imageio.render_preview(data, max_side)[0]


# --- the queue ---------------------------------------------------------------


def second_review_chosen(photo_id: str, share: float, seed: int = 0) -> bool:
    """Whether an approved photo goes to a second, blind review (a keyed draw: the same every time)."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"second review {seed}|{photo_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64 < share


def risk_queue(vault: Vault, *, purpose: str = "care", second_share: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """The photos to review, riskiest first, each with its reasons.

    Risk adds up: never reviewed (3), output failed verification (3),
    low-confidence detections (2 each kind: a weak face box may hide the
    finding), regions near the size limits (1: tiny, or close to the
    share of the frame verification may hide on its own), not de-identified
    yet (1), sent back (1). Approved photos are left out, except the share
    ``second_share`` drawn for a second, blind review by someone other than
    who approved them (those carry ``second_review``).

    Returns
    -------
    pandas.DataFrame
        photo_id, risk, reasons (list of str), state, second_review, body_site.
    """
    if not 0 <= float(second_share) <= 1:
        raise InvalidInput("second_share is a share of approved photos, between 0 and 1")
    photos = vault.photos(purpose)
    results = vault.deid_results(photos["photo_id"], purpose=purpose).set_index("photo_id")
    history = vault.review_history(photos["photo_id"])
    approvers = history[history["state"] == "approved"].groupby("photo_id")["reviewed_by"].agg(set)
    rows = []
    for photo in photos.itertuples(index=False):
        reasons, risk = [], 0
        second = False
        if photo.review_state == "approved":
            users = approvers.get(photo.photo_id, set())
            if not second_review_chosen(photo.photo_id, second_share, seed) or len(users) >= 2 \
                    or vault.user in users:
                continue
            second, reasons, risk = True, ["drawn for a second, blind review"], 1
        elif photo.review_state in ("unreviewed", "in_review"):
            risk += 3
            reasons.append("never reviewed" if photo.review_state == "unreviewed" else "review not finished")
        elif photo.review_state == "rejected":
            risk += 1
            reasons.append("sent back")
        if photo.photo_id not in results.index:
            risk += 1
            reasons.append("not de-identified yet")
        else:
            result = results.loc[photo.photo_id]
            if not bool(result["verified"]):
                risk += 3
                reasons.append("output failed verification")
            frame = max(1, int(result["width"]) * int(result["height"]))
            weak = sorted({r["kind"] for r in result["regions"] if r.get("detector") != "manual"
                           and float(r.get("score", 1)) < (REVIEW_FACE_SCORE if r["kind"] == "face" else LOW_SCORE)})
            if weak:
                risk += 2 * len(weak)
                reasons.append("low-confidence " + ", ".join(weak))
            if any(SLOUGH_MARK in w for w in result["warnings"]):
                risk += 2
                reasons.append("a weak face box left visible as slough in a wound")
            if any(min(r["box"][2], r["box"][3]) < SMALL_SIDE or r["box"][2] * r["box"][3] > 0.75 * MORE_MAX_SHARE * frame
                   for r in result["regions"]):
                risk += 1
                reasons.append("a region near the size limits")
        rows.append({"photo_id": photo.photo_id, "risk": risk, "reasons": reasons,
                     "state": "second review" if second else photo.review_state,
                     "second_review": second, "body_site": photo.body_site})
    frame = pd.DataFrame.from_records(rows, columns=["photo_id", "risk", "reasons", "state", "second_review",
                                                     "body_site"])
    return frame.sort_values(["risk", "photo_id"], ascending=[False, True], kind="stable").reset_index(drop=True)


def _dice(a: list[dict], b: list[dict]) -> float:
    """2 x matched / (|a| + |b|): a region matches one of the other's of the same kind at IoU >= 0.5."""
    free = list(b)
    matched = 0
    for r in a:
        best = max(free, default=None, key=lambda o: iou(r["box"], o["box"]) if o["kind"] == r["kind"] else -1)
        if best is not None and best["kind"] == r["kind"] and iou(r["box"], best["box"]) >= 0.5:
            matched += 1
            free.remove(best)
    return 2 * matched / (len(a) + len(b)) if a or b else 1.0


def review_figures(history: pd.DataFrame, *, session_gap: float = 900.0) -> dict:
    """How reviews went, from :meth:`Vault.review_history`.

    Returns
    -------
    dict
        ``agreement``: share of decisions (approved or rejected) that agree
        with the decision before them on the same photo by another reviewer
        (None when no photo was decided twice), with ``compared`` pairs;
        ``region_agreement``: on photos whose regions two reviewers marked
        (a blind second review marks its own), the mean Dice score of their
        regions, a region of one matching one of the other's of the same kind
        that overlaps it by IoU >= 0.5 (None without such photos), over
        ``region_pairs`` photos;
        ``corrections``: regions added and removed by kind after a photo's
        first save; ``seconds_per_photo``: median time between a reviewer's
        consecutive saves of different photos (gaps over ``session_gap``
        seconds are breaks, not work), None without any; ``saves`` and
        ``photos``.
    """
    agree = compared = 0
    dice: list[float] = []
    corrections: dict[str, dict[str, int]] = {k: {"added": 0, "removed": 0} for k in REGION_KINDS}
    gaps: list[float] = []
    for _, saves in history.groupby("photo_id", sort=False):
        saves = saves.sort_values("version")
        last_decision = None
        previous = None
        for save in saves.itertuples(index=False):
            if save.state in ("approved", "rejected"):
                if last_decision is not None and last_decision[0] != save.reviewed_by:
                    compared += 1
                    agree += int(last_decision[1] == save.state)
                last_decision = (save.reviewed_by, save.state)
            if previous is not None:
                old = {(r["kind"], tuple(r["box"])) for r in previous}
                new = {(r["kind"], tuple(r["box"])) for r in save.regions}
                for kind, _ in new - old:
                    corrections.setdefault(kind, {"added": 0, "removed": 0})["added"] += 1
                for kind, _ in old - new:
                    corrections.setdefault(kind, {"added": 0, "removed": 0})["removed"] += 1
            previous = save.regions
        by_author: dict[str, list[dict]] = {}
        for r in previous or ():
            if not r.get("dismissed") and r.get("author"):
                by_author.setdefault(r["author"], []).append(r)
        deciders = list(dict.fromkeys(s.reviewed_by for s in saves.itertuples(index=False)
                                      if s.state in ("approved", "rejected")))
        if len(deciders) >= 2 and (by_author.get(deciders[0]) or by_author.get(deciders[1])):
            dice.append(_dice(by_author.get(deciders[0], []), by_author.get(deciders[1], [])))
    for _, saves in history.groupby("reviewed_by"):
        times = pd.to_datetime(saves["reviewed"], utc=True, format="ISO8601")
        order = saves.assign(_t=times).sort_values("_t")
        last = None
        for photo_id, moment in zip(order["photo_id"], order["_t"]):
            if last is not None and last[0] != photo_id:
                gap = (moment - last[1]).total_seconds()
                if 0 <= gap <= session_gap:
                    gaps.append(gap)
            last = (photo_id, moment)
    return {
        "agreement": (agree / compared) if compared else None,
        "compared": compared,
        "region_agreement": float(np.mean(dice)) if dice else None,
        "region_pairs": len(dice),
        "corrections": {k: v for k, v in corrections.items() if v["added"] or v["removed"]},
        "seconds_per_photo": float(np.median(gaps)) if gaps else None,
        "saves": int(len(history)),
        "photos": int(history["photo_id"].nunique()) if len(history) else 0,
    }


__all__ = ["PhotoView", "SHORTCUTS", "redacted_jpeg", "review_figures", "risk_queue", "role_advice",
           "second_review_chosen"]
