"""CSV and Parquet manifests: columns ``path,label[,split]``.

Paths are relative to the manifest's folder, or absolute. Column names are matched
case-insensitively. A CSV is read as UTF-8 (a byte-order mark is fine, UTF-16 with a BOM
too); a line that is not valid UTF-8 is reported and skipped, the other lines are read.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..errors import DatasetError
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
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MANIFEST_SUFFIXES
                   and (guard is None or guard.allows(p)) and p.is_file())
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
            problems.append(Problem(
                f"{path} line {number}", "not_utf8",
                f"line is not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                "save the manifest as UTF-8", SKIPPED))
            lines.append("")
    return "\n".join(lines)


def _csv_rows(path: Path, problems: list[Problem]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    text = _decode_csv(path, problems)
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                continue
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        problems.append(Problem(f"{path} line {reader.line_num}", "bad_csv",
                                f"CSV cannot be parsed from here on ({exc}); fix the quoting", SKIPPED))
    return header or [], rows


def _parquet_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types
        raise DatasetError(f"Manifest {path} is not a readable Parquet file ({exc}).") from exc
    header = [str(c).strip().lower() for c in frame.columns]
    frame = frame.astype(object).where(frame.notna(), "")
    return header, [(i + 1, [str(v) for v in values]) for i, values in enumerate(frame.itertuples(index=False))]


def load_manifest(manifest: str | Path, *, name: str | None = None, source: str = "manifest",
                  progress: Progress | None = None, allowed_roots: Roots = None,
                  prior_problems: Sequence[Problem] = ()) -> Dataset:
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
            problems.append(Problem(location, "bad_row",
                                    f"has {len(row)} cells, the header has {len(header)}; fix the row", SKIPPED))
            continue
        rel, label = row[col["path"]].strip(), row[col["label"]].strip()
        raw_split = row[col["split"]].strip() if "split" in col else ""
        if not rel or not label:
            problems.append(Problem(location, "bad_row", "empty path or label; fill it in or remove the row", SKIPPED))
            continue
        split = SPLIT_ALIASES.get(raw_split.lower())
        if split is None:
            problems.append(Problem(location, "unknown_split",
                                    f"split {raw_split!r} is not one of train, val, test (or empty for train); "
                                    "fix the value", SKIPPED))
            continue
        try:
            path = Path(rel).expanduser()
        except RuntimeError:  # "~user" with no such user: a plain relative path
            path = None if guard is not None else Path(rel)
        joined = None if path is None else path if path.is_absolute() else base / path
        if guard is not None and (joined is None or not guard.allows(joined)):
            problems.append(guard.problem(location, rel))
            continue
        full = str(joined.resolve())
        if full in seen:
            first, first_label = seen[full]
            extra = f" with a different label ({first_label!r} there, {label!r} here)" if first_label != label else ""
            problems.append(Problem(location, "duplicate_path",
                                    f"path {rel!r} already listed at {first}{extra}; the first row is used", SKIPPED))
            continue
        seen[full] = (location, label)
        candidates.append(Candidate(full, label, split, location))
    return assemble(name or manifest.name, base, source, candidates, problems, progress=progress)
