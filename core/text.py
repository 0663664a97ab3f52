"""Text that can always be printed and written: names that are not valid UTF-8.

File and folder names are bytes on POSIX; Python decodes the ones that are not valid UTF-8
with ``surrogateescape`` (``b"\\xff"`` -> ``"\\udcff"``). Such a string opens the file, but it
cannot be encoded as UTF-8, so printing it, writing it to a CSV or JSON file, or putting it
in a pandas table (pandas 3 stores text as UTF-8) raises ``UnicodeEncodeError``.

:func:`display_text` turns it into plain text that shows the undecodable bytes as
``\\xNN`` (``"caf\\udce9"`` -> ``"caf\\\\xe9"``, i.e. ``caf\\xe9``). It is used for everything
meant for people or for text files: class labels, problem-report rows, CSV cells, printed
paths. Image paths themselves are kept as they are so the files can still be opened.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_encodable(text: str) -> bool:
    """True when ``text`` encodes as UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_text(text: Any) -> Any:
    """``text`` with every lone surrogate replaced by a visible escape (non-strings unchanged).

    A ``surrogateescape`` surrogate (``U+DC80``-``U+DCFF``, an undecodable byte) becomes
    ``\\xNN`` with the original byte; any other lone surrogate becomes ``\\uNNNN``. Text that
    is valid UTF-8 already is returned unchanged (the same object).
    """
    if not isinstance(text, str) or is_encodable(text):
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


#: First characters that make a spreadsheet treat a cell as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_csv_cell(value: Any) -> Any:
    """Prefix a text cell starting with ``= + - @``, tab or CR with ``'`` (numbers untouched)."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def unescape_csv_cell(value: str) -> str:
    """Undo :func:`escape_csv_cell`: ``'=x`` -> ``=x`` (any other text unchanged), so a CSV this
    project wrote (e.g. ``subset.csv``, a ``subset.zip`` manifest) reads back as it was."""
    if value.startswith("'") and value[1:2] and value[1:2] in FORMULA_PREFIXES:
        return value[1:]
    return value


def display_array(values: np.ndarray) -> np.ndarray:
    """A str array with :func:`display_text` applied where needed (the same array when nothing is)."""
    arr = np.asarray(values)
    if arr.dtype.kind != "U" or arr.size == 0:
        return arr
    flat = arr.ravel().tolist()
    if is_encodable("".join(flat)):
        return arr
    return np.array([display_text(v) for v in flat], dtype=str).reshape(arr.shape)


__all__ = ["FORMULA_PREFIXES", "display_array", "display_text", "escape_csv_cell", "is_encodable", "unescape_csv_cell"]
