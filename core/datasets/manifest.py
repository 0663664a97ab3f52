"""CSV and Parquet manifests: columns ``path,label[,split]``.

Paths are relative to the manifest's folder, or absolute. Column names are matched
case-insensitively. A CSV is read as UTF-8 (a byte-order mark is fine, UTF-16 with a BOM
too); a line that is not valid UTF-8 is reported and skipped, the other lines are read. A
cell may not span lines: a quote left open on its line is reported there (``bad_csv``) and
the lines it would swallow are read on their own. A cell written as ``'=x`` (this project's
escaping of formula-like text, ``core.text.escape_csv_cell``) reads as ``=x``. Parquet
integer columns keep integer text (``3``, not ``3.0``) also when a cell is null; a null
path or label is a ``bad_row``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import DatasetError
from ..text import unescape_csv_cell
from .assemble import Candidate, assemble
from .images import Progress
from .model import SKIPPED, SPLIT_ALIASES, Dataset, Problem
from .roots import Roots, make_guard, refuse_source

REQUIRED = ("path", "label")
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


def find_manifest(folder: Path, *, any_name: bool = False, allowed_roots: Roots = None) -> Path | None:
    """The manifest at the top of ``folder``: ``manifest.csv``/``.parquet``/``.pq``, or with
    ``any_name`` the only CSV/Parquet file there; None when there is none. With
    ``allowed_roots``, a file (or link) outside them is never considered (nor looked at)."""
    guard = make_guard(allowed_roots)
    try:
        entries = list(folder.iterdir())
    except OSError:  # an unreadable folder: the folder loader reports it
        return None
    files = sorted(
        p
        for p in entries
        if p.suffix.lower() in MANIFEST_SUFFIXES and (guard is None or guard.allows(p)) and p.is_file()
    )
    named = [p for p in files if p.stem.lower() == "manifest"]
    if named:
        return named[0]
    if any_name and len(files) == 1:
        return files[0]
    return None


def _decode_csv(path: Path, problems: list[Problem]) -> str:
    """The CSV's text; undecodable lines become empty lines (so numbering holds) and are reported."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problems.append(
                Problem(
                    f"{path} line {number}",
                    "not_utf8",
                    f"line is not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    "save the manifest as UTF-8",
                    SKIPPED,
                )
            )
            lines.append("")
    return "\n".join(lines)


_LINE_BREAK = re.compile(r"\r\n|\n|\r")


def _line_alone(path: Path, lines: list[str], number: int, problems: list[Problem], opened: int) -> list[str] | None:
    """Line ``number`` of a block swallowed by the unclosed quote of line ``opened``, parsed on
    its own; None (and a ``bad_csv`` row) when it holds a quote of its own."""
    line = lines[number - 1] if number - 1 < len(lines) else ""
    try:
        cells = next(csv.reader([line], strict=True), [])
    except csv.Error as exc:
        cells = None
        why = str(exc)
    else:
        why = "a quote character in a cell"
    if cells is None or any('"' in cell for cell in cells):
        problems.append(
            Problem(
                f"{path} line {number}",
                "bad_csv",
                f"this line was swallowed by the unclosed quote of line {opened} and has a quote of its "
                f"own ({why}), so it cannot be read safely; fix the quoting",
                SKIPPED,
            )
        )
        return None
    return cells


def _csv_rows(path: Path, problems: list[Problem]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and ``(line number, cells)`` of every row.

    A cell never spans lines in a manifest: a quote that is not closed on its own line makes
    the csv module swallow the following lines into one cell (and a whole class with them).
    Such a row is reported as ``bad_csv`` at the line where the quote opens, and each
    swallowed line is read on its own (one that holds a quote itself is reported too).
    """
    text = _decode_csv(path, problems)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    lines: list[str] | None = None

    def take(number: int, row: list[str]) -> None:
        nonlocal header
        if not row or all(not cell.strip() for cell in row):
            return
        if header is None:
            header = [cell.strip().lower() for cell in row]
            return
        rows.append((number, row))

    last = 0
    try:
        for row in reader:
            start, end = last + 1, reader.line_num
            last = end
            if end > start and any("\n" in cell or "\r" in cell for cell in row):
                lines = _LINE_BREAK.split(text) if lines is None else lines
                problems.append(
                    Problem(
                        f"{path} line {start}",
                        "bad_csv",
                        f"a quote opens on this line and is not closed on it, so it swallowed lines {start + 1}-{end} into "
                        f"one cell; this line was skipped and the others read on their own. Close the quote (or remove it) "
                        f"on line {start}",
                        SKIPPED,
                    )
                )
                for number in range(start + 1, end + 1):
                    cells = _line_alone(path, lines, number, problems, start)
                    if cells is not None:
                        take(number, cells)
                continue
            take(end, row)
    except csv.Error as exc:
        problems.append(
            Problem(
                f"{path} line {reader.line_num}",
                "bad_csv",
                f"CSV cannot be parsed from here on ({exc}); fix the quoting",
                SKIPPED,
            )
        )
    return header or [], rows


def _cell_text(value) -> str:
    """A Parquet cell as manifest text: null -> "", integral floats (an integer column with a
    null, read as float) -> "3" rather than "3.0"."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        frame = pd.read_parquet(path, dtype_backend="numpy_nullable")
    except Exception as exc:  # pyarrow raises several types
        raise DatasetError(f"Manifest {path} is not a readable Parquet file ({exc}).") from exc
    header = [str(c).strip().lower() for c in frame.columns]
    frame = frame.astype(object)
    return header, [(i + 1, [_cell_text(v) for v in values]) for i, values in enumerate(frame.itertuples(index=False))]


def load_manifest(
    manifest: str | Path,
    *,
    name: str | None = None,
    source: str = "manifest",
    progress: Progress | None = None,
    allowed_roots: Roots = None,
    prior_problems: Sequence[Problem] = (),
) -> Dataset:
    """Load a dataset from a CSV or Parquet manifest (see the module docstring).

    Problems reported per row (the row is skipped): wrong number of cells, empty path or
    label, unknown split value, duplicate path, and every image problem of
    :func:`~core.datasets.images.inspect_image`. A manifest without the ``path`` and
    ``label`` columns raises :class:`DatasetError` naming the columns it has.

    ``allowed_roots``: when given, the manifest and every path it lists (absolute, with
    ``..``, or through a link) must lie inside one of these folders; a row naming a path
    outside is one ``outside_allowed_roots`` problem, decided before the file is looked at,
    with the same reason whether or not it exists (see :mod:`core.datasets.roots`). None (the
    default) reads every path. ``prior_problems`` (e.g. an archive's refused entries) start
    the report.
    """
    guard = make_guard(allowed_roots)
    refuse_source(guard, Path(manifest).expanduser(), "manifest")
    manifest = Path(manifest).expanduser().resolve()
    if not manifest.is_file():
        raise DatasetError(f"Manifest {manifest} does not exist.")
    problems: list[Problem] = list(prior_problems)
    is_parquet = manifest.suffix.lower() in (".parquet", ".pq")
    header, rows = _parquet_rows(manifest) if is_parquet else _csv_rows(manifest, problems)
    where = "row" if is_parquet else "line"
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DatasetError(
            f"Manifest {manifest} has columns {header or '(none)'} but needs path,label[,split] "
            f"(missing: {', '.join(missing)}); add a header line such as `path,label,split`."
        )
    col = {name: header.index(name) for name in ("path", "label", "split") if name in header}
    base = manifest.parent
    candidates: list[Candidate] = []
    seen: dict[str, tuple[str, str]] = {}
    for number, row in rows:
        location = f"{manifest} {where} {number}"
        if len(row) != len(header):
            problems.append(
                Problem(
                    location, "bad_row", f"has {len(row)} cells, the header has {len(header)}; fix the row", SKIPPED
                )
            )
            continue
        # a cell written as '=x by this project's CSV escaping (subset.csv, a subset.zip manifest) reads as =x
        rel, label = (unescape_csv_cell(row[col[c]].strip()) for c in ("path", "label"))
        raw_split = row[col["split"]].strip() if "split" in col else ""
        if not rel or not label:
            empty = " and ".join(c for c, v in (("path", rel), ("label", label)) if not v)
            problems.append(
                Problem(
                    location, "bad_row", f"empty {empty} (a blank or null cell); fill it in or remove the row", SKIPPED
                )
            )
            continue
        split = SPLIT_ALIASES.get(raw_split.lower())
        if split is None:
            problems.append(
                Problem(
                    location,
                    "unknown_split",
                    f"split {raw_split!r} is not one of train, val, test (or empty for train); fix the value",
                    SKIPPED,
                )
            )
            continue
        path: Path | None
        try:
            path = Path(rel).expanduser()
        except RuntimeError:  # "~user" with no such user: a plain relative path
            path = None if guard is not None else Path(rel)
        joined = None if path is None else path if path.is_absolute() else base / path
        if guard is not None and (joined is None or not guard.allows(joined)):
            problems.append(guard.problem(location, rel))
            continue
        assert joined is not None  # None only under a guard, which refused the row above
        full = str(joined.resolve())
        if full in seen:
            first, first_label = seen[full]
            extra = f" with a different label ({first_label!r} there, {label!r} here)" if first_label != label else ""
            problems.append(
                Problem(
                    location,
                    "duplicate_path",
                    f"path {rel!r} already listed at {first}{extra}; the first row is used",
                    SKIPPED,
                )
            )
            continue
        seen[full] = (location, label)
        candidates.append(Candidate(full, label, split, location))
    return assemble(name or manifest.name, base, source, candidates, problems, progress=progress)
