"""Rulers: the lines of a photo that are a clinical ruler's numbers and tick marks.

A ruler is measurement, not identity, and stays visible
(:data:`._text.RULERS_VISIBLE`). PP-OCR boxes a ruler's ticks and numbers in
many ways (together, apart, number by number); each rule here marks one of
them, in the reads :func:`._text.detect_text` then skips.
"""

from __future__ import annotations

import cv2
import numpy as np

from .._regions import coverage
from ._ocr import _frame_box, _grown, _line_axes, _line_box, _line_crop, _recognise
from ._reading import _consecutive, _dropped, _IDENTIFIER, _is_ruler, _numbers, _ruler_span, _TICK_ROW_MIN_CHARS, _ticks


def _beside(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether line quad ``b`` lies directly above or below line quad ``a`` (beside it, for an upright one).

    Across ``a``'s reading direction the boxes are at most one line height
    of ``a`` apart; along it they overlap.
    """
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _along_across(a, b)
    gap = max(ay0, by0) - min(ay1, by1)
    return gap <= ay1 - ay0 and min(ax1, bx1) - max(ax0, bx0) > 0


def _along_across(a: np.ndarray, b: np.ndarray) -> tuple[tuple, tuple]:
    """The upright boxes ``(x0, y0, x1, y1)`` of line quads ``a`` and ``b``, x along ``a``'s reading direction.

    For an upright line (taller than wide) the axes are swapped.
    """
    (ax0, ay0), (ax1, ay1) = a.min(axis=0), a.max(axis=0)
    (bx0, by0), (bx1, by1) = b.min(axis=0), b.max(axis=0)
    if ax1 - ax0 < ay1 - ay0:
        return (ay0, ax0, ay1, ax1), (by0, bx0, by1, bx1)
    return (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1)


#: Marks a line found to be a ruler's numbering row (see :func:`_find_ruler_rows`).
_RULER = "\x00ruler"


def _find_ruler_rows(engine, quads: list, crops: list, reads: list, image: np.ndarray | None = None) -> None:
    """Mark lines that are a ruler's scale: tick marks above (or below) a row of numbers.

    PP-OCR boxes a ruler's ticks and its small numbers as one line, and the
    recogniser, given both, reads noise ("99", "41299", "1123456"). A line
    read with little confidence, as far fewer characters than its length
    holds, or as digits alone, is read again as two overlapping bands, top
    and bottom. When one band is a ruler's numbering (:func:`_is_ruler`) and
    the other holds only what tick marks read as (no digits; at most one
    letter, or only thin lower-case letters and strokes such as "uu",
    "utuuumulm"), the line is a ruler and ``reads`` is set to :data:`_RULER`.
    When one band read as ticks and the other as no numbering, and the
    ``image`` the line was cut from is given, the two bands are read again
    reaching :data:`_BAND_REACH` of the line's height beyond its box.

    PP-OCR may also box a ruler's tick row as a line of its own, and its
    numbers as separate pieces ("8", "9 10"). A line read as tick marks (at
    least :data:`_TICK_ROW_MIN_CHARS` characters) directly above or below a
    line read as a ruler's numbering, or as a few numbers, is a ruler too:
    both are set to :data:`_RULER`. So is a line of a few numbers that
    continues the count of a ruler's numbering along its line
    (:func:`_find_continuing_numbers`). Nothing that matches an identifier
    pattern is taken for ticks or numbers.
    """
    first_reads = [None if read is None else read[0] for read in reads]
    suspects = _band_suspects(crops, reads)
    # A line read as next to nothing is dropped whatever its bands say; they
    # matter only to the tick-row test, which pairs rows with numbering
    # beside them. Such a line is read in bands only when it is a tick row
    # itself or lies beside one (on the 20 MP benchmark frames most band
    # reading was of such lines, and the result is the same).
    half = _read_bands(engine, [(i, crops[i]) for i in suspects if not _dropped(reads[i][0])], reads)
    rows = _tick_row_candidates(reads)
    half += _read_bands(engine, [(i, crops[i]) for i in suspects if _dropped(reads[i][0])
                                 and (i in rows or any(_beside(quads[r], quads[i]) for r in rows))], reads)
    if image is not None and half:
        wider = [(i, _line_crop(image, _grown(quads[i], 0.0, _BAND_REACH).astype(np.float32))) for i in half]
        _read_bands(engine, [(i, crop) for i, crop in wider if crop is not None], reads, reach=_BAND_REACH)
    _find_tick_rows(quads, crops, reads)
    if image is not None:
        _find_numbers_by_ticks(image, quads, reads)
    _find_continuing_numbers(quads, first_reads, reads)
    # Again, beside the numbers found since: on seed 2039 a ruler's "11 12
    # 13" was found by its ticks, after the tick rows were looked at.
    _find_tick_bits(quads, reads)


def _band_suspects(crops: list, reads: list) -> list[int]:
    """The lines the band test of :func:`_find_ruler_rows` reads again: read as noise, or as digits alone."""
    suspects = []
    for i, (crop, read) in enumerate(zip(crops, reads)):
        if crop is None or read is None or _is_ruler(read[0]):
            continue
        text, score = read
        h, w = crop.shape[:2]
        chars = sum(not ch.isspace() for ch in text)
        # Digits alone are what a ruler's row reads as, and a tick read as "1"
        # in front of its numbers ("1123456") spoils an otherwise clear read.
        digits_only = chars > 0 and all(ch.isdigit() or ch.isspace() for ch in text)
        if h >= 16 and (score < 0.9 or chars < 0.8 * w / h or digits_only):
            suspects.append(i)
    return suspects


#: How far beyond a ruler line's box its bands reach when read again (see
#: :func:`_find_ruler_rows`), as a share of the line's height. PP-OCR's box
#: can cut through a ruler's small numbers: in a seed-2028 phantom the
#: numbers 1-12 under the ticks were cut at mid-height, the line read as
#: "4101994957" (a record number, to the identifier patterns), its bands
#: as "" and "2", and the whole ruler was hidden (6.9% of a clean photo).
_BAND_REACH = 0.35


def _read_bands(engine, lines: list[tuple[int, np.ndarray]], reads: list, *, reach: float = 0.0) -> list[int]:
    """The band test of :func:`_find_ruler_rows` on ``(line, crop)`` pairs: each crop read in two bands.

    Each crop is its line's box grown by ``reach`` of its height on each
    side; the bands are the top 60% and the bottom 60% of the line, each
    also holding what lies beyond its edge. Returns the lines where one
    band read as ticks and the other as no numbering.
    """
    if not lines:
        return []
    band_reads = _recognise(engine, [band for _, crop in lines for band in _bands(crop, reach)])
    half = []
    for j, (i, _) in enumerate(lines):
        top, bottom = band_reads[2 * j], band_reads[2 * j + 1]
        if top is None or bottom is None:
            continue
        (t, _), (b, _) = top, bottom
        if (_is_ruler(t) and _ticks(b)) or (_is_ruler(b) and _ticks(t)):
            reads[i] = (_RULER, reads[i][1])
        elif _ticks(t) or _ticks(b):
            half.append(i)
    return half


def _bands(crop: np.ndarray, reach: float = 0.0) -> list[np.ndarray]:
    """A line's crop (its box grown by ``reach`` of its height on each side) cut into its top and bottom 60%, each with what lies beyond its edge."""
    h = crop.shape[0]
    top_end, bottom_start = (reach + 0.6) / (1 + 2 * reach), (reach + 0.4) / (1 + 2 * reach)
    return [crop[:int(h * top_end)], crop[int(h * bottom_start):]]


def _tick_row_candidates(reads: list) -> list[int]:
    """Lines read as a row of tick marks (at least :data:`_TICK_ROW_MIN_CHARS` characters), a few as "1" (:func:`_ticks_with_ones`)."""
    return [i for i, read in enumerate(reads) if read is not None and read[0] is not _RULER
            and sum(not ch.isspace() for ch in read[0]) >= _TICK_ROW_MIN_CHARS
            and (_ticks(read[0]) or _ticks_with_ones(read))]


#: A tick row's longer ticks can read as "1": on fresh seed 2057 (467) the
#: tick row of a ruler along the frame's top edge, above its "1 2 3 4" and
#: "10 11", read as "[ll1ll" at 0.26 and was hidden over a scar (sent to
#: review). Read with little confidence (:data:`_TICKS_MAX_CONFIDENCE`), a
#: line of tick letters with "1" for at most this share of its characters
#: is a tick-row candidate too: a ruler's row only when it lies beside the
#: ruler's numbering (:func:`_find_tick_rows`). No other digit counts, and
#: a name has no "1" in it.
_TICK_ONES_MAX_SHARE = 1 / 3


def _ticks_with_ones(read: tuple[str, float]) -> bool:
    """Whether a line reads as tick marks with a few of them read as "1" (see :data:`_TICK_ONES_MAX_SHARE`)."""
    text, score = read
    chars = [ch for ch in text if not ch.isspace()]
    ones = chars.count("1")
    return 0 < ones <= _TICK_ONES_MAX_SHARE * len(chars) and score < _TICKS_MAX_CONFIDENCE \
        and not any(p.search(text) for p in _IDENTIFIER) and _ticks(text.replace("1", "l"))


def _find_tick_rows(quads: list, crops: list, reads: list) -> None:
    """The tick-row tests of :func:`_find_ruler_rows`: tick rows beside a ruler's (pieces of) numbering, or regular."""
    rows = _tick_row_candidates(reads)
    numbering = [i for i, read in enumerate(reads) if read is not None
                 and (read[0] is _RULER or _is_ruler(read[0]) or _numbers(read[0]))]
    for i in rows:
        beside = [k for k in numbering if _beside(quads[i], quads[k])]
        if beside:
            for k in [i, *beside]:
                reads[k] = (_RULER, reads[k][1])
    # A ruler with no numbers (see :func:`_unnumbered_ticks`).
    for i, read in enumerate(reads):
        if read is not None and read[0] is not _RULER and crops[i] is not None and _unnumbered_ticks(crops[i], read):
            reads[i] = (_RULER, read[1])
    _find_counting_numbers(quads, reads)
    _find_tick_bits(quads, reads)


def _find_tick_bits(quads: list, reads: list) -> None:
    """Mark a few tick marks read on their own ("mm", "ul") next to a ruler's line (see :data:`_TICK_BITS_CHARS`)."""
    rulers = [q for q, r in zip(quads, reads) if r is not None and r[0] is _RULER]
    for i, read in enumerate(reads):
        if read is not None and read[0] is not _RULER and _tick_bits(read) \
                and any(_beside(q, quads[i]) or _in_row(q, quads[i]) for q in rulers):
            reads[i] = (_RULER, read[1])


#: A line read as fewer tick letters than a tick row (:data:`_TICK_ROW_MIN_CHARS`:
#: "mm", "ul", "lulul"), with little confidence
#: (:data:`_TICKS_MAX_CONFIDENCE`), beside a ruler's line or next to it
#: along its row, is more of its ticks: on seed 2036 the bare start of a
#: ruler whose numbers began further along read as "mm" (0.28) and was
#: hidden; on seed 2039 a ruler's end, read as "lulul" (0.64) after its "13"
#: (this was at most three letters then). Printed names are read with 0.9
#: or more.
_TICK_BITS_CHARS = _TICK_ROW_MIN_CHARS - 1


def _tick_bits(read: tuple[str, float]) -> bool:
    """Whether a line reads as a few tick marks (see :data:`_TICK_BITS_CHARS`)."""
    text, score = read
    chars = sum(not ch.isspace() for ch in text)
    return 0 < chars <= _TICK_BITS_CHARS and score < _TICKS_MAX_CONFIDENCE and _ticks(text)


def _in_row(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether line quad ``b`` continues line quad ``a``'s row: level with it and at most one line height from its end."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _along_across(a, b)
    level = min(ay1, by1) - max(ay0, by0) >= 0.5 * min(ay1 - ay0, by1 - by0)
    return level and max(ax0, bx0) - min(ax1, bx1) <= ay1 - ay0


#: A ruler's numbers boxed one by one ("8", "10", "11") are found as a ruler
#: when at least this many of them, with distinct values, lie along one line
#: and count up along it at an even pitch (see :func:`_find_counting_numbers`).
#: A lone number beside the end of a ruler has no row of ticks beyond it to
#: show it is one (:func:`_ticks_beside`): on seed 2035 a "10" by the dark
#: drape at a ruler's end and an "8" at another's end, read as "18" with the
#: tick above it, were hidden, one of them on a wound, while the numbers
#: before them were read one by one along the same line.
_COUNTING_MIN = 3


def _find_counting_numbers(quads: list, reads: list) -> None:
    """Mark lines that are a ruler's numbers read one by one: they count up along a line (see :data:`_COUNTING_MIN`).

    A candidate is a line read as one whole number of at most three digits
    (also read without a leading "1": a tick read in front of the number).
    For a pair of candidates with different values, the others must lie on
    the line through their centres (within half a line height across it)
    at the place their value predicts along it (within a third of the
    pitch). The values found must count in one of a ruler's steps
    (:data:`_COUNTING_STEPS`), at most one number missing between two, and
    neighbours must stand at least most of a line height apart. Lines read
    as a single digit count as evidence, although :func:`detect_text` drops
    them anyway; a pair's first line has two or more digits (only those
    lines are kept).
    """
    rows = []  # (line, value, x, y, height): one row per reading of a candidate
    for i, read in enumerate(reads):
        if read is None or read[0] is _RULER:
            continue
        text = read[0].strip()
        if not (text.isascii() and text.isdigit() and len(text) <= 3) or any(p.search(text) for p in _IDENTIFIER):
            continue
        (x0, y0), (x1, y1) = quads[i].min(axis=0), quads[i].max(axis=0)
        values = {int(text)} | ({int(text[1:])} if len(text) >= 2 and text[0] == "1" else set())
        rows += [(i, v, (x0 + x1) / 2, (y0 + y1) / 2, min(x1 - x0, y1 - y0)) for v in values]
    if len({r[0] for r in rows}) < _COUNTING_MIN:
        return
    table = np.array(rows, np.float64)
    line, value, centre, height = table[:, 0].astype(int), table[:, 1], table[:, 2:4], table[:, 4]
    ruler: set[int] = set()
    for a in range(len(rows)):
        if len(reads[line[a]][0].strip()) < 2:
            continue
        for b in range(len(rows)):
            if line[b] == line[a] or value[b] == value[a]:
                continue
            step = (centre[b] - centre[a]) / (value[b] - value[a])  # image pixels per unit of the ruler
            pitch = float(np.hypot(*step))
            if pitch < 1e-3:
                continue
            d = centre - centre[a]
            across = np.abs(d[:, 0] * step[1] - d[:, 1] * step[0]) / pitch
            at = value[a] + (d @ step) / pitch ** 2
            fit = (across <= 0.5 * np.maximum(height, max(height[a], height[b]))) & (np.abs(value - at) <= 1 / 3)
            counted = _counting(value[fit], line[fit], pitch, float(np.median(height[fit])))
            if counted is not None:
                members, count_step = counted
                ruler.update(int(i) for i in members)
                ruler.update(_spanned_by_the_count(quads, reads, ruler, centre[a], value[a], step, count_step))
    for i in ruler:
        reads[i] = (_RULER, reads[i][1])


def _spanned_by_the_count(quads: list, reads: list, known: set, origin: np.ndarray, origin_value: float,
                          step: np.ndarray, count_step: int) -> list[int]:
    """Lines read as a few of a ruler's numbers that lie where its count (found by :func:`_find_counting_numbers`) puts them.

    ``origin`` is the centre of the number ``origin_value``, ``step`` the
    image offset per unit of the ruler, ``count_step`` the step its numbers
    count in. A line (not in ``known``) read as two or more numbers counting
    in that step (``"1 2"``, ``"12"``: :func:`_counts`) is the ruler's when
    the count's line passes through its box, the places of its first and
    last number lie inside the box along the line, and the box is at most
    as long as two more numbers than it holds (as :func:`_continues`
    allows). PP-OCR boxes the start of a ruler's numbering with the tick
    row above it: on fresh seed 2052 a ruler's "1 2"
    boxed with its ticks (163x67 px) was read as "12" at 0.89, beside its
    "8", "10", "11" and "12" read one by one, and hidden over a blob.
    """
    pitch2 = float(step @ step)
    found = []
    for i, read in enumerate(reads):
        if i in known or read is None or read[0] is _RULER:
            continue
        for values in _counts(read[0]):
            if len(values) < 2 or any(b - a != count_step for a, b in zip(values, values[1:])):
                continue
            d = quads[i].astype(np.float64) - origin
            at = origin_value + (d @ step) / pitch2                   # each corner's place on the ruler
            across = (d[:, 0] * step[1] - d[:, 1] * step[0]) / np.sqrt(pitch2)
            if across.min() <= 0 <= across.max() and at.min() <= values[0] and values[-1] <= at.max() \
                    and at.max() - at.min() <= (len(values) + 2) * count_step:
                found.append(i)
                break
    return found


#: The steps a ruler's numbering counts in (1 2 3, 2 4 6, 5 10 15, 10 20 30...).
_COUNTING_STEPS = (1, 2, 5, 10, 20, 50, 100)


def _counting(values: np.ndarray, lines: np.ndarray, pitch: float, height: float) -> tuple[np.ndarray, int] | None:
    """The lines of a ruler's numbering among readings on one line and the step it counts in (see :func:`_find_counting_numbers`), or None."""
    order = np.unique(values, return_index=True)[1]
    found, where = values[order], lines[order]
    if found.size < _COUNTING_MIN:
        return None
    gaps = np.diff(found)
    step = gaps.min()
    if step not in _COUNTING_STEPS or not np.all((gaps == step) | (gaps == 2 * step)) or step * pitch < 0.8 * height:
        return None
    return where, int(step)


#: A line of a few numbers ("9 10") continues a ruler's numbering ("1234 5")
#: when it lies on the numbering's line and its values stand where the
#: numbering's pitch puts them, with at most this many numbers missing
#: between the two (see :func:`_find_continuing_numbers`). On seed 2037 a
#: dark lesion over a ruler's edge hid the ticks above its "9 10" (so
#: :func:`_ticks_beside` found no row of them) and PP-OCR found no "6 7 8":
#: the "9 10" was hidden, on a clean photo.
_CONTINUING_GAP = 5


def _find_continuing_numbers(quads: list, texts: list, reads: list) -> None:
    """Mark lines read as a few numbers that continue a ruler's numbering along its line (see :data:`_CONTINUING_GAP`).

    ``texts`` are the lines' first reads: a numbering line (:func:`_is_ruler`)
    may be marked :data:`_RULER` by then. For a numbering line counting
    ``first..last`` in ``step`` and a line of numbers counting in the same
    step (or one number of two or more digits), all beyond the numbering's
    range, the distance between the lines' centres over the difference of
    their middle values is the ruler's pitch. The numbers are the ruler's
    when their centre lies on the numbering's line (within half its height
    across it), that pitch is at least most of the numbers' height (they do
    not overlap), and both boxes are as long as their numbers at that
    pitch: the numbering's between one number fewer and two more than it
    holds (PP-OCR's boxes reach past the first and last digits), the
    numbers' between one fewer (a quarter of one, for a lone number) and
    two more. A ruler can lie either way up and its direction is not known
    here, so numbers on either side of the numbering count. A few numbers
    already marked :data:`_RULER` (found by their ticks) are a numbering
    too, counting in the step of the numbers beside them.
    """
    rulers = [(i, span) for i, text in enumerate(texts)
              if isinstance(text, str) and (span := _ruler_span(text)) is not None]
    # ...and a few numbers already known for a ruler's by their ticks (a
    # lone "10"), whose step is the numbers' own (seed 2042: "11 12" beside
    # the "10" found by its ticks, on a clean photo)
    spanned = {i for i, _ in rulers}
    rulers += [(i, (min(v), max(v), _own_step(v))) for i, text in enumerate(texts)
               if i not in spanned and isinstance(text, str) and reads[i] is not None and reads[i][0] is _RULER
               and _numbers(text) and (v := _values(text))]
    if not rulers:
        return
    for i, read in enumerate(reads):
        if read is None or read[0] is _RULER:
            continue
        if any(_continues_one(rulers, quads, i, values) for values in _counts(read[0])):
            reads[i] = (_RULER, read[1])


def _continues_one(rulers: list, quads: list, i: int, values: list[int]) -> bool:
    """Whether line ``i``, read as ``values``, continues one of ``rulers`` (see :func:`_find_continuing_numbers`)."""
    for k, (first, last, ruler_step) in rulers:
        step = ruler_step or _own_step(values) or 1
        beyond = min(values) - last if min(values) > last else first - max(values) if max(values) < first else 0
        if k == i or not 0 < beyond <= step * (_CONTINUING_GAP + 1) \
                or any(b - a != step for a, b in zip(values, values[1:])) or (values[0] - first) % step:
            continue
        if _continues(quads[k], (last - first) // step + 1, (first + last) / 2,
                      quads[i], len(values), (values[0] + values[-1]) / 2, step):
            return True
    return False


def _counts(text: str) -> list[list[int]]:
    """The ways a line can read as a few of a ruler's numbers.

    Its whole numbers (``"9 10"``: 9, 10), and digits run together that
    count up one by one (``"1011"``: 10, 11; see :func:`_consecutive`): on
    seed 2045 a ruler's "10 11", read as "1011" beyond its "1 2 3 4 5 6",
    was hidden as text over a scar.
    """
    out = []
    if _numbers(text) and sum(ch.isalnum() for ch in text) >= 2:
        out.append(_values(text))
    token = text.strip()
    if token.isdigit() and token.isascii() and not any(p.search(text) for p in _IDENTIFIER):
        count, first = _consecutive(token)
        if count >= 2:
            out.append(list(range(first, first + count)))
    return out


def _values(text: str) -> list[int]:
    """The numbers of a line read as a few numbers (see :func:`_numbers`)."""
    return [int(t) for t in text.replace(",", " ").split()]


def _own_step(values: list[int]) -> int | None:
    """The step a line's numbers count in, or None for one number or an uneven count."""
    steps = {b - a for a, b in zip(values, values[1:])}
    return steps.pop() if len(steps) == 1 and min(steps) > 0 else None


def _continues(ruler: np.ndarray, n: int, middle: float, pts: np.ndarray, m: int, at: float, step: int) -> bool:
    """The geometry test of :func:`_find_continuing_numbers`.

    Whether ``m`` numbers centred on value ``at`` in line quad ``pts``
    continue the ``n`` numbers counting in ``step`` centred on ``middle`` in
    line quad ``ruler``.
    """
    along, across = _line_axes(ruler)
    length, height = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    if length < 1e-3 or height < 1e-3:
        return False
    d = pts.mean(axis=0) - ruler.mean(axis=0)
    if abs(float(d @ across)) / height > 0.5 * height:
        return False
    pitch = abs(float(d @ along)) / length / (abs(at - middle) / step)
    own, own_height = (float(np.linalg.norm(v)) for v in _line_axes(pts))
    return pitch >= 0.8 * own_height and (n - 1) * pitch <= length <= (n + 2) * pitch \
        and max(m - 1, 0.25) * pitch <= own <= (m + 2) * pitch


#: A few numbers read on their own ("13", "9 10") are a ruler's when a
#: strip beside them, reaching this many line heights beyond the line at
#: each end, is a row of tick marks (see :func:`_ticks_beside`). PP-OCR often boxes a ruler's numbers one by
#: one and misses its ticks: in 25 of 500 seed-2030 phantoms a lone ruler
#: number was hidden, and verification, looking again beside the fill, then
#: found the next numbers and failed the output.
_NUMBER_TICK_REACH = 3.0


def _ticks_beside(image: np.ndarray, pts: np.ndarray) -> bool:
    """Whether a row of tick marks lies directly above or below the line in quadrilateral ``pts`` (``image``'s pixels).

    The strip beside the line is two line heights deep (a ruler's
    millimetre ticks can stand a line height beyond its numbers) and
    reaches :data:`_NUMBER_TICK_REACH` line heights beyond both of its
    ends, or twice that beyond one end only (the last number of a ruler
    sits near its end, and skin beyond the end is no row of ticks). Its
    strokes need only be thin in its tick band: the strip can reach past the
    ruler's edge onto skin, whose mottled dark pixels read as wide ink.
    """
    p0, p1, p2, p3 = pts
    along, across = _line_axes(pts)
    if np.linalg.norm(((p1 - p0) + (p2 - p3)) / 2) < np.linalg.norm(along):  # an upright line: relabel its corners
        p0, p1, p2, p3 = p1, p2, p3, p0
    unit = along / max(float(np.linalg.norm(along)), 1e-6) * float(np.linalg.norm(across)) * _NUMBER_TICK_REACH
    reach = across * 2.0
    for before, after in ((1.0, 1.0), (2.0, 0.0), (0.0, 2.0)):
        q0, q1, q2, q3 = p0 - before * unit, p1 + after * unit, p2 + after * unit, p3 - before * unit
        for strip in ((q0 - reach, q1 - reach, q1, q0), (q3, q2, q2 + reach, q3 + reach)):
            crop = _line_crop(image, np.array(strip, np.float32))
            if crop is not None and _regular_strokes(crop, thin_in_band=True):
                return True
    return False


def _find_numbers_by_ticks(image: np.ndarray, quads: list, reads: list) -> None:
    """Mark lines read as a few numbers ("13", "9 10") that have a ruler's ticks beside them (see :data:`_NUMBER_TICK_REACH`).

    A line boxed twice by PP-OCR's passes, a few pixels apart and read the
    same, is a ruler's when either box has the ticks beside it: on seed 2036
    one box of an "11" had them in its strip (:func:`_ticks_beside`) and the
    other, cut shorter, did not, and was hidden. Lines of fewer than two
    digits are dropped by :func:`detect_text` anyway and are not looked at.
    """
    numbers = [i for i, r in enumerate(reads) if r is not None and r[0] is not _RULER and _numbers(r[0])
               and sum(ch.isalnum() for ch in r[0]) >= 2]
    ticked = {i for i in numbers if _ticks_beside(image, quads[i])}
    boxes = {i: _frame_box(_line_box(quads[i]), 1.0) for i in numbers}
    marked = ticked | {i for i in numbers if i not in ticked and any(
        reads[k][0] == reads[i][0] and coverage(boxes[i], [boxes[k]]) >= 0.5 for k in ticked)}
    for i in marked:
        reads[i] = (_RULER, reads[i][1])


def _unnumbered_ticks(crop: np.ndarray, read: tuple[str, float]) -> bool:
    """Whether a line is the tick row of a ruler without numbers: three tests, all needed.

    It reads as tick marks (:func:`_ticks`: no digit, nothing identifier-like,
    only the letters ticks read as), it is read with little confidence (below
    :data:`_TICKS_MAX_CONFIDENCE`), and its strokes repeat at one spacing
    along the line (:func:`_regular_strokes`, thin in every pixel row or in
    the tick band alone: on seed 2038 the box over a bare ruler's start
    reached a row onto the skin above it, which blended with the ticks into
    runs as wide as the spacing). Each test alone passes some names:
    "Hamilton" is all tick letters, and "Illuminati" or "Millhill" in a
    bold oblique font repeat as evenly as ticks do.
    """
    text, score = read
    return score < _TICKS_MAX_CONFIDENCE and _ticks(text) \
        and (_regular_strokes(crop) or _regular_strokes(crop, thin_in_band=True))


#: A tick row is read with less confidence than this (see :func:`_unnumbered_ticks`).
#: Tick rows of the first held-out phantoms read at 0.23-0.44, printed names
#: at 0.9 or more; on seed 2036 the start of rulers with no numbers read at
#: 0.52-0.67 ("whuluhuluhm", "ul") and was hidden, on clean photos too.
_TICKS_MAX_CONFIDENCE = 0.8


#: A line crop is a row of evenly spaced strokes when its column profile
#: (mean grey level per column, local trend removed) correlates with itself
#: shifted by one spacing at least this much, by two spacings at least the
#: second, and the line holds at least the third number of spacings. The
#: spacing is the shortest that repeats. Measured on the tick rows of
#: unnumbered rulers in the seed-2027 phantoms (read as "dd",
#: "duluuudmlum", "ldon", "uh"): 0.61-0.84 at one spacing, 0.46-0.73 at
#: two, 8-13 spacings. In the seed-2028 set two short pieces of ruler
#: (121 and 198 px) repeated only in their tick band (0.61 and 0.68 at 5
#: px), where the millimetre ticks are, not over the whole crop, where the
#: longer ticks every half centimetre break the pattern; hence the band.
#: Printed names can repeat as evenly ("Illuminati" in a bold oblique
#: font; 90 of 264 name crops in the fonts here pass), hence the next test.
_STROKES_REPEAT = (0.55, 0.4, 8)
#: ...and its strokes are thin: no run of ink along any pixel row is wider
#: than this share of the (shortest) spacing. Ticks are bare upright lines;
#: letters have bowls, arches, bars and feet. Measured: drawn rulers with
#: 5-12 px millimetres 0.25-0.6, the seed-2028 ruler pieces 0.4 and 0.6;
#: every name crop that passed the repeat test 0.8 or more.
_STROKES_THIN = 0.7


def _regular_strokes(crop: np.ndarray, *, thin_in_band: bool = False) -> bool:
    """Whether a line crop (BGR) is a row of thin, evenly spaced strokes, as a ruler's ticks are.

    The strokes must repeat (:data:`_STROKES_REPEAT`) in the column profile
    of the whole crop or of its tick band (the pixel rows crossed by the
    most strokes: where a ruler's long centimetre ticks and its short
    millimetre ticks all are), and be thin (:data:`_STROKES_THIN`): in
    every pixel row, or with ``thin_in_band`` in the tick band's rows only,
    counting only the darkest fifth as ink (a strip beside a ruler's
    numbers can also hold skin beyond its edge).
    """
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if gray.shape[1] < 64:
        return False
    # Ink: within the darker third between the darkest hundredth and the
    # lightest tenth (skin beside a grey ruler is darker than its paper).
    dark, light = np.percentile(gray, (1, 90))
    if light - dark < 40:
        return False
    # Beside a ruler's numbers the strip can reach onto skin as dark as the
    # ink threshold, whose noise makes runs of every width: there only the
    # darkest fifth is ink (ticks are printed black).
    share = 0.2 if thin_in_band else 0.35
    ink = np.pad((gray < dark + share * (light - dark)).astype(np.int8), ((0, 0), (1, 1)))
    edges = np.diff(ink, axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # row-major: each start pairs with the next end
    strokes = np.bincount(rows, minlength=gray.shape[0])
    band = strokes >= max(1, 0.6 * strokes.max())
    lags = [lag for lag in (_repeat(gray), _repeat(gray[band])) if lag]
    if not lags:
        return False
    inside = (starts > 0) & (ends < gray.shape[1])  # runs cut by the crop's sides are not measured
    if thin_in_band:
        inside &= band[rows]
    widest = int((ends - starts)[inside].max(initial=0))
    return widest <= _STROKES_THIN * min(lags)


def _repeat(gray: np.ndarray) -> int | None:
    """The spacing (pixels) at which ``gray``'s column profile repeats per :data:`_STROKES_REPEAT`, or None."""
    first, second, spacings = _STROKES_REPEAT
    profile = gray.astype(np.float32).mean(axis=0)
    trend = np.convolve(profile, np.ones(15, np.float32) / 15, mode="same")
    p = (profile - trend)[8:-8]  # the trend is not defined at the ends
    p -= p.mean()
    n = p.size
    ac = np.correlate(p, p, "full")[n - 1:]
    if ac[0] <= 0 or n // spacings <= 4:
        return None
    ac /= ac[0]
    # The shortest spacing that repeats (a ruler's millimetres, not the
    # longer period of its half-centimetre ticks); ticks at a spacing that
    # is not a whole number of pixels peak beside twice the lag.
    for lag in range(3, n // spacings):
        if ac[lag] >= first and ac[lag] >= ac[lag - 1] and ac[lag] >= ac[lag + 1]:
            return lag if ac[2 * lag - 1:2 * lag + 2].max() >= second else None
    return None
