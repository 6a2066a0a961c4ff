"""Progress bars for long work: a count and a rate, in the terminal and in notebooks.

Bars go to stderr (a widget in a notebook) and carry a fixed description and
counts only: never a file name, photo id or patient id.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable

#: ``1``: always show, as plain text on stderr (tests, and the papermill kernel
#: whose stderr the command line relays); ``0``: never; unset: when stderr is a
#: terminal, or in a notebook.
ENV = "WORKBENCH_PROGRESS"


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "photo"):
    """A tqdm bar over ``iterable`` (or updated by hand) that shows where it should.

    Parameters
    ----------
    iterable : iterable, optional
        What to count; without it, call ``update`` on the bar.
    total : int, optional
        Number of items, when ``len(iterable)`` does not give it.
    desc : str
        A fixed description such as ``"de-identify"``: no identifiers.
    unit : str
        What is counted, for the rate (``photo/s``).

    Returns
    -------
    tqdm.tqdm
        Use it as an iterable or a context manager; closing it prints the
        final count, time and rate.
    """
    setting = os.environ.get(ENV, "")
    if setting == "1":
        from tqdm.std import tqdm

        # plain text even inside a kernel: a widget would not reach a terminal
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=False,
                    dynamic_ncols=True)
    from tqdm.auto import tqdm

    # disable=None: off when stderr is not a terminal (a log, a pipe); on in notebooks
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True if setting == "0" else None)
