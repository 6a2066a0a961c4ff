"""The gallery: consent-filtered thumbnails, filters, paging and a selection."""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import pandas as pd
import traitlets

from .. import _imageio
from ..errors import InvalidInput
from ..vault import REVIEW_STATES, Vault
from ._base import _Widget, action, module

#: what the gallery filters on (``date_from``/``date_to`` bound ``capture_date``)
FILTERS = ("body_site", "diagnosis", "review_state", "date_from", "date_to")
#: longest side of a de-identified thumbnail
THUMB_SIDE = 256
#: thumbnails kept in memory, so that paging back costs nothing
_CACHE = 600


def _check_filters(filters: dict) -> None:
    unknown = set(filters) - set(FILTERS)
    if unknown:
        raise InvalidInput(f"the gallery filters on {', '.join(FILTERS)}, not {', '.join(sorted(unknown))}")
    for key in ("date_from", "date_to"):
        value = filters.get(key)
        if value and not (isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"
                          and value.replace("-", "").isdigit()):
            raise InvalidInput(f"{key} is a date written YYYY-MM-DD, e.g. 2024-06-30")


class Gallery(_Widget):
    """Thumbnails of the photos consented for ``purpose``, a page at a time.

    Parameters
    ----------
    vault : Vault
    purpose : str
        ``care``, ``research``, ``education`` or ``publication``: only photos
        whose patient's consent holds for it now are listed (one audited
        query when the gallery opens or is refreshed).
    page_size : int, default 48

    Notes
    -----
    A role holding the originals key sees previews of the originals; any
    other role sees de-identified previews only, and only of photos whose
    redaction was approved and verified (an unapproved one may still show
    an identifier): ``notice`` says so. Each page's thumbnails are one
    message over the comm; the photo list is queried once and filtered in
    memory, so a page of a large vault costs its 48 thumbnails only.
    """

    _esm = module("gallery.js")

    purpose = traitlets.Unicode("research").tag(sync=True)
    #: ``originals`` or ``deidentified``: what the thumbnails show
    mode = traitlets.Unicode("").tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    filters = traitlets.Dict().tag(sync=True)
    #: the values each filter can take: body sites, diagnoses, review states
    choices = traitlets.Dict().tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(48).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    pages = traitlets.Int(0).tag(sync=True)
    #: the current page: ``{"photo_id", "body_site", "diagnosis", "capture_date", "review_state", "shown"}``
    items = traitlets.List().tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)

    def __init__(self, vault: Vault, *, purpose: str = "research", page_size: int = 48):
        if not isinstance(page_size, int) or not 1 <= page_size <= 500:
            raise InvalidInput("page_size is a number of thumbnails between 1 and 500")
        super().__init__(purpose=purpose, page_size=page_size, role=vault.role)
        self._vault = vault
        self._thumbs: OrderedDict[str, bytes | None] = OrderedDict()
        self._all = pd.DataFrame()
        self._shown = pd.DataFrame()
        if vault._keys.has("originals"):
            self.mode = "originals"
            self.notice = ("previews of the originals (identifiable): they reach this browser only, "
                           "never the notebook file")
        else:
            self.mode = "deidentified"
            self.notice = (f"the {vault.role} role sees de-identified previews only, and only of photos "
                           "whose redaction was approved and verified")
        self.observe(self._on_filters, names="filters")
        self.observe(self._on_page, names="page")
        self.refresh()

    def on_select(self, fn: Callable[[pd.DataFrame], None]) -> None:
        """Call ``fn(selection)`` whenever the selection changes."""
        self._on("select", fn)

    # -- data ---------------------------------------------------------------------

    @action
    def refresh(self) -> None:
        """Query the vault again (consent is evaluated now) and show the first page."""
        frame = self._vault.photos(self.purpose)  # ConsentError for an unknown purpose
        if self.mode == "deidentified":
            self._deid = self._vault.deid_results(frame["photo_id"], purpose=self.purpose).set_index("photo_id")
        self._all = frame
        self._thumbs.clear()
        self.choices = {
            "body_site": sorted(frame["body_site"].dropna().unique().tolist()),
            "diagnosis": sorted(frame["diagnosis"].dropna().unique().tolist()),
            "review_state": list(REVIEW_STATES),
        }
        self.selected = [p for p in self.selected if p in set(frame["photo_id"])]
        self._apply()

    def _filtered(self) -> pd.DataFrame:
        frame = self._all
        f = self.filters
        _check_filters(f)
        for column in ("body_site", "diagnosis", "review_state"):
            if f.get(column):
                wanted = f[column] if isinstance(f[column], list) else [f[column]]
                frame = frame[frame[column].isin(wanted)]
        for key, keep in (("date_from", lambda d, v: d >= v), ("date_to", lambda d, v: d <= v)):
            value = f.get(key)
            if value:
                dates = frame["capture_date"]
                frame = frame[dates.notna() & keep(dates.astype(str), value)]
        return frame.sort_values(["capture_date", "photo_id"], na_position="last").reset_index(drop=True)

    def _apply(self) -> None:
        self._shown = self._filtered()
        self.total = len(self._shown)
        self.pages = max(1, -(-self.total // self.page_size))
        if self.page != 0:
            self.page = 0  # _on_page shows it
        else:
            self._show()

    def _on_filters(self, change) -> None:
        try:
            self._apply()
        except InvalidInput as exc:  # set from the browser: say why, and put the old ones back
            self.filters = change["old"]
            self.error = str(exc)

    def _on_page(self, change) -> None:
        if not 0 <= change["new"] < max(1, self.pages):
            self.page = change["old"]
            self.error = f"there are {self.pages} pages"
            return
        self._show()

    # -- pages ----------------------------------------------------------------------

    def _page_ids(self) -> list[str]:
        start = self.page * self.page_size
        return list(self._shown["photo_id"].iloc[start:start + self.page_size])

    def _load_thumbs(self, ids: list[str]) -> None:
        missing = [p for p in ids if p not in self._thumbs]
        if not missing:
            return
        if self.mode == "originals":
            got = self._vault.load_previews(missing, purpose=self.purpose)  # one audit record per page
        else:
            got = {}
            states = self._all.set_index("photo_id")["review_state"]
            for photo_id in missing:
                usable = (photo_id in self._deid.index and states.get(photo_id) == "approved"
                          and bool(self._deid.loc[photo_id, "verified"]))
                got[photo_id] = None
                if usable:
                    data = self._vault.load_derivative(self._deid.loc[photo_id, "blob_id"], purpose=self.purpose)
                    got[photo_id] = _imageio.render_preview(data, THUMB_SIDE)[0]
        for photo_id in missing:
            self._thumbs[photo_id] = got.get(photo_id)
        while len(self._thumbs) > _CACHE:
            self._thumbs.popitem(last=False)

    def _show(self) -> None:
        ids = self._page_ids()
        self._load_thumbs(ids)
        rows = self._shown.set_index("photo_id").loc[ids] if ids else self._shown.iloc[:0]
        with self.hold_sync():  # items and status reach the browser as one update
            self.items = [
                {"photo_id": pid, "body_site": r.body_site,
                 "diagnosis": r.diagnosis if isinstance(r.diagnosis, str) else None,
                 "capture_date": r.capture_date if isinstance(r.capture_date, str) else None,
                 "review_state": r.review_state, "shown": self._thumbs.get(pid) is not None}
                for pid, r in zip(ids, rows.itertuples(index=False))
            ]
            self.status = (f"{self.total} photo{'' if self.total == 1 else 's'} consented for {self.purpose}"
                           f"{' (filtered)' if any(self.filters.values()) else ''}; page {self.page + 1} of "
                           f"{self.pages}; {len(self.selected)} selected")
        self._resend()

    def _resend(self) -> None:
        ids = [item["photo_id"] for item in self.items]
        shown = [p for p in ids if self._thumbs.get(p)]
        self.send({"type": "thumbs", "page": self.page, "ids": shown}, buffers=[self._thumbs[p] for p in shown])

    @action
    def next_page(self) -> None:
        """Show the next page."""
        if self.page + 1 < self.pages:
            self.page += 1

    @action
    def previous_page(self) -> None:
        """Show the previous page."""
        if self.page > 0:
            self.page -= 1

    @action
    def set_filters(self, **filters) -> None:
        """Filter by ``body_site``, ``diagnosis``, ``review_state`` (a value or a list) and
        ``date_from`` / ``date_to`` (``YYYY-MM-DD``); ``None`` clears one."""
        merged = {**self.filters, **filters}
        merged = {k: v for k, v in merged.items() if v not in (None, "", [])}
        _check_filters(merged)
        self.filters = merged

    # -- selection -------------------------------------------------------------------

    @action
    def toggle(self, photo_id: str) -> None:
        """Add a photo of the list to the selection, or take it out."""
        if photo_id not in set(self._shown["photo_id"]):
            raise InvalidInput("that photo is not in the gallery's list (check its filters)", photo_id=photo_id)
        chosen = list(self.selected)
        chosen.remove(photo_id) if photo_id in chosen else chosen.append(photo_id)
        self.selected = chosen
        self._fire("select", self.selection())

    @action
    def select_page(self) -> None:
        """Select every photo of the current page."""
        self.selected = list(dict.fromkeys(self.selected + self._page_ids()))
        self._fire("select", self.selection())

    @action
    def clear_selection(self) -> None:
        """Select nothing."""
        self.selected = []
        self._fire("select", self.selection())

    def selection(self) -> pd.DataFrame:
        """The selected photos as the vault's query returned them (non-identifying columns)."""
        frame = self._all[self._all["photo_id"].isin(self.selected)]
        order = {p: n for n, p in enumerate(self.selected)}
        return frame.sort_values("photo_id", key=lambda s: s.map(order)).reset_index(drop=True)
