"""What a recognised line of text is: an identifier, a ruler's numbering, tick marks, or allowed text.

Pure functions of the text; nothing here sees pixels.
"""

from __future__ import annotations

import re
import unicodedata


#: Patterns whose presence anywhere in a recognised line makes it an
#: identifier (always returned, whatever the allow-list says). Over-matching
#: is safe: it only means a label is always hidden.
IDENTIFIER_PATTERNS: tuple[str, ...] = (
    # Person-name-like: two capitalised words ("Alvaro Quinn", "QUINN, ALVARO").
    r"\b[A-Z][a-z]+[ ,]+[A-Z][a-z]+",
    r"\b[A-Z]{2,},?\s+[A-Z][A-Za-z]+",
    # Record numbers: five or more digits, or letters next to four or more digits.
    r"\d{5,}",
    r"[A-Za-z][-#:/ ]?\d{4,}",
    r"\d{4,}[-/ ]?[A-Za-z]",
    # Dates: ISO and day/month/year orders, numeric or with a month name.
    r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b",
    r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b",
    r"(?i)\b\d{1,2}[\s.-]*(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?[\s.-]*\d{2,4}\b",
    r"(?i)\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2},?\s+\d{2,4}\b",
    # Phone numbers: groups of digits with separators, optional country code.
    r"\+?\(?\d{2,4}\)?[\s.-]\d{3,4}[\s.-]\d{3,4}",
    r"\+\d{1,3}[\s.-]?\d",
    # E-mail addresses.
    r"[\w.+-]+@[\w-]+\.[\w.-]+",
    # Label keywords that introduce an identifier.
    r"(?i)\b(dob|d\.o\.b|mrn|nhs|ssn|patient|name|born|birth)\b",
)
_IDENTIFIER = [re.compile(p) for p in IDENTIFIER_PATTERNS]


def _allowed(text: str, allow: list[re.Pattern]) -> bool:
    """Whether a recognised line is entirely made of allowed text and is no identifier."""
    line = " ".join(text.split())
    if not line or not allow or any(p.search(line) for p in _IDENTIFIER):
        return False
    if any(p.fullmatch(line) for p in allow):
        return True
    # A ruler read as one line ("1 2 3"): every token must be allowed.
    return all(any(p.fullmatch(tok) for p in allow) for tok in line.split())


_UNIT = re.compile(r"(?i)^(cm|mm)$")


def _consecutive(digits: str, start_max: int = 99) -> tuple[int, int]:
    """The longest run of consecutive whole numbers ``digits`` spells with no separator, as ``(count, first)``.

    ``"12345678910"`` is 1 to 10, ``(10, 1)``; ``"345"`` is 3 to 5. Each
    number has at most three digits and the first is below 100; a count of
    0 means ``digits`` spells no run.
    """
    best = (0, 0)
    for first_len in (1, 2):
        if len(digits) < first_len or (first_len > 1 and digits[0] == "0"):
            continue
        first = n = int(digits[:first_len])
        if n > start_max:
            continue
        pos, count = 0, 0
        while pos < len(digits):
            s = str(n)
            if len(s) > 3 or not digits.startswith(s, pos):
                count = 0
                break
            pos, n, count = pos + len(s), n + 1, count + 1
        best = max(best, (count, first))
    return best


def _is_ruler(text: str) -> bool:
    """Whether a recognised line is a ruler's numbering, which identifies no one.

    A ruler line is three or more whole numbers in arithmetic order, each of
    at most three digits, the first below 100: consecutive (``"1 2 3 4 5"``,
    ``"3 4 5 6"``), in tens (``"10 20 30 mm"``) or run together as OCR reads
    closely set digits (``"12345678910"``); in a line of six or more, one of
    them may be misread (:data:`_MISREAD_MIN`). A unit (cm, mm) may stand
    before or after. Nothing else may be on the line, so a record number, a
    phone number or a date beside the scale makes the line no ruler.
    """
    return _ruler_span(text) is not None


def _ruler_span(text: str) -> tuple[int, int, int] | None:
    """A ruler line's numbering as ``(first, last, step)``, or None when the line is no ruler's (see :func:`_is_ruler`)."""
    tokens = text.replace(",", " ").split()
    tokens = [t for i, t in enumerate(tokens) if not (_UNIT.match(t) and i in (0, len(tokens) - 1))]
    if not tokens or not all(t.isdigit() and t.isascii() for t in tokens):
        return None
    # OCR joins closely set numbers or splits them where it likes ("1 2 34 5",
    # "12345678910"): the digits run together must count up one by one...
    count, first = _consecutive("".join(tokens))
    if count >= 3:
        return first, first + count - 1, 1
    # ...or the tokens must count up in a ruler's steps ("10 20 30").
    if any(len(t) > 3 or (len(t) > 1 and t[0] == "0") for t in tokens):
        return None
    values = [int(t) for t in tokens]
    if len(values) < 3 or values[0] >= 100:
        return _misread_one(values)
    step = values[1] - values[0]
    if step in (1, 2, 5, 10) and all(b - a == step for a, b in zip(values, values[1:])):
        return values[0], values[-1], step
    return _misread_one(values)


#: A long ruler line may have one number misread ("1 2 3 ... 10 11 2 13
#: 14": on seed 2038 the "12" of a 14 cm ruler lost its "1", and the whole
#: ruler, read as one line, was hidden on a clean photo): with at least this
#: many numbers, all but one in a ruler's count is a ruler's numbering.
_MISREAD_MIN = 6


def _misread_one(values: list[int]) -> tuple[int, int, int] | None:
    """``(first, last, step)`` when all but one of ``values`` (numbers of at most three digits) count in a ruler's step."""
    n = len(values)
    if n < _MISREAD_MIN:
        return None
    for step in (1, 2, 5, 10):
        starts = [v - i * step for i, v in enumerate(values)]
        first = max(set(starts), key=starts.count)
        if starts.count(first) >= n - 1 and 0 <= first < 100:
            return first, first + (n - 1) * step, step
    return None


def _better_read(upright: tuple[str, float], turned: tuple[str, float]) -> bool:
    """Whether a line the classifier turned is better read upright: as a ruler's numbering.

    Only then: a ruler lying upside down in the photo reads upright as
    noise, sometimes with more confidence, and the loose identifier
    patterns match some of that noise. A turned read that is an identifier
    always stands.
    """
    up, down = _fold(upright[0]), _fold(turned[0])
    return _is_ruler(up) and not _is_ruler(down) and not any(p.search(down) for p in _IDENTIFIER)


def _fold(text: str) -> str:
    """Full-width digits and letters folded to ASCII (the recogniser reads "１２３")."""
    return unicodedata.normalize("NFKC", text)


#: What a row of tick marks reads as: thin lower-case letters and strokes.
#: On the 100 clean phantoms of a 500-phantom set, rows of ticks (alone or
#: as a band above a ruler's numbers) also read with "w", "d", "h", "a",
#: "o", "y", a leading "J", "L" or "T", "H" and "+" ("wlanuuuuuuuuuuuuuuuadond",
#: "Laddaud", "Juuluul...yuluuluuduud...", "|+|+|+"); without them four
#: rulers there were hidden whole (3.8-9% of the frame). On seed 2035 a row
#: of a ruler with no numbers also read with "b" ("undmdulualbmluaom").
#: "■" is a redaction's fill: verification's window around a redacted label
#: on seed 2040 read the ruler's tick row beside it as "■mmmmmmmmmmmmmmm".
_TICK_READ = re.compile(r"[\sulmnitrjI|!'`\".,:;()\[\]「」wdhaoybJLTH+■]*")
#: A line read as tick marks is a ruler's tick row (see :func:`_find_ruler_rows`)
#: only with at least this many characters: the rows measured read as 9 to
#: 67 ("muulumulm", "Juuluul..."); a short word is not taken for one.
_TICK_ROW_MIN_CHARS = 6


def _ticks(text: str) -> bool:
    """Whether a band's text is what tick marks read as (no digit, nothing identifier-like)."""
    if any(ch.isdigit() for ch in text) or any(p.search(text) for p in _IDENTIFIER):
        return False
    return sum(ch.isalnum() for ch in text) < 2 or bool(_TICK_READ.fullmatch(text))


def _numbers(text: str) -> bool:
    """Whether a line reads as a few of a ruler's numbers ("8", "9 10"): whole numbers of at most three digits."""
    tokens = text.replace(",", " ").split()
    return bool(tokens) and all(t.isdigit() and t.isascii() and len(t) <= 3 for t in tokens) \
        and not any(p.search(text) for p in _IDENTIFIER)


def _dropped(text: str) -> bool:
    """Whether :func:`detect_text` drops a line read as ``text`` as no text at all (fewer than two letters or digits)."""
    return sum(ch.isalnum() for ch in text) < 2 and not any(p.search(text) for p in _IDENTIFIER)
