"""Bad input, as an explicit matrix (issue #10): datasets, manifests, archives, features files,
options and outputs.

Every case asserts what the README promises: the message names the file or row and says what
to do; the CLI exits with status 2 on bad input (no traceback); the run goes on where it can
(the other files, rows and entries are used); source data is never modified; an output that
cannot be written leaves the old file (and no temporary file) behind.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.datasets import load_dataset, load_manifest
from core.errors import CoresetError, DatasetError, OutputError, SelectionInputError
from core.features import FeatureSet, load_features, save_features
from core.selection import run_selection

from .conftest import write_image
from .test_datasets import png_bytes


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr); a traceback would fail the test itself."""
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def error_line(err: str) -> str:
    """The CLI's one error message (after any progress bar drawn on stderr), or ''."""
    return err[err.rindex("error: ") :].strip() if "error: " in err else ""


def make_features(
    n_per_class=(8, 8), dim=4, seed=0, labels=None, split=None, paths=None, scale=1.0, dtype=np.float32
) -> dict[str, np.ndarray]:
    """The arrays of a small, valid features file (two well-separated classes)."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(np.arange(len(n_per_class)), n_per_class)
    means = rng.normal(size=(len(n_per_class), dim)) * 4
    x = ((means[codes] + rng.normal(size=(len(codes), dim))) * scale).astype(dtype)
    arrays = {"feat_m": x, "labels": np.array([f"c{c}" for c in codes]) if labels is None else labels}
    if split is not None:
        arrays["split"] = split
    if paths is not None:
        arrays["paths"] = paths
    return arrays


def save_npz(path: Path, arrays: dict) -> Path:
    np.savez(path, **arrays)
    return path


def expected_display(raw: bytes) -> str:
    """How a name made of ``raw`` bytes is shown: its undecodable bytes as \\xNN (Python's own
    ``backslashreplace`` decoding, independent of the code under test)."""
    return raw.decode("utf-8", "backslashreplace")


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# =============================================================================================
# datasets: names that are not valid UTF-8
# =============================================================================================

UNDECODABLE = [
    pytest.param("café".encode("latin-1"), id="latin-1"),
    pytest.param("\u201cq\u201d".encode("cp1252"), id="cp1252"),
    pytest.param("猫".encode("shift_jis"), id="shift_jis"),
    pytest.param("貓".encode("big5"), id="big5"),
    pytest.param(b"\xff\xfe", id="raw-0xff"),
    pytest.param("é".encode()[:1] + b"x", id="truncated-utf8"),
]


def _assert_undecodable(raw: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # the case really is a name that is not UTF-8


@pytest.mark.parametrize("raw", UNDECODABLE)
def test_check_loads_and_prints_a_class_folder_named_in_another_encoding(tmp_path, capsys, raw):
    _assert_undecodable(raw)
    root = tmp_path / "data"
    bad = os.fsdecode(raw)
    for i in range(3):
        write_image(root / bad / f"{i}.png", seed=i)
        write_image(root / "good" / f"{i}.png", seed=10 + i)
    (root / bad / "notes.txt").write_text("not an image")  # one problem row inside the odd folder
    before = sorted(os.listdir(os.fsencode(root)))
    report = tmp_path / "problems.csv"
    rc, out, err = run_cli(["check", root, "--report", report], capsys)
    assert rc == 0, err
    shown = expected_display(raw)
    counts = {line.split()[0]: line.split()[-1] for line in out.splitlines()[2:] if line.split()}
    assert counts.get(shown) == "3" and counts.get("good") == "3", out
    text = report.read_bytes().decode("utf-8")  # the report is valid UTF-8
    frame = pd.read_csv(io.StringIO(text))
    assert frame["kind"].tolist() == ["not_an_image"] and shown in frame["location"][0]
    assert shown in err and "notes.txt" in err
    ds = load_dataset(root)
    assert sorted(set(ds.labels)) == sorted({shown, "good"})
    assert all(os.path.isfile(p) for p in ds.paths)  # the paths still open the files
    assert sorted(os.listdir(os.fsencode(root))) == before  # nothing renamed


@pytest.mark.parametrize("raw", UNDECODABLE)
def test_select_writes_labels_and_paths_that_are_not_utf8(tmp_path, capsys, raw):
    _assert_undecodable(raw)
    odd = os.fsdecode(raw)
    labels = np.array([odd] * 8 + ["plain"] * 8)
    paths = np.array([os.fsdecode(b"/data/" + raw + b"%d.png" % i) for i in range(16)])
    features = save_npz(tmp_path / "f.npz", make_features(labels=labels, paths=paths))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["select", features, "--method", "herding", "--fraction", "0.5", "--out", out], capsys)
    assert rc == 0, err
    shown = expected_display(raw)
    subset = pd.read_csv(io.StringIO((out / "subset.csv").read_bytes().decode("utf-8")))
    assert set(subset["label"]) == {shown, "plain"} and len(subset) == 8
    assert all(p.startswith("/data/" + shown) for p in subset["path"])
    scores = pd.read_csv(io.StringIO((out / "scores.csv").read_bytes().decode("utf-8")))
    assert len(scores) == 16
    sel = json.loads((out / "selection.json").read_bytes().decode("utf-8"))
    assert shown in sel["budget_table"]["data"]["class"]


@pytest.mark.parametrize("where", ["file name", "sub-folder", "dataset folder"])
def test_undecodable_file_and_folder_names_inside_a_dataset(tmp_path, capsys, where):
    raw = b"\xe9t\xe9"
    odd = os.fsdecode(raw)
    root = tmp_path / ("data" + odd if where == "dataset folder" else "data")
    write_image(root / "a" / "0.png", seed=1)
    write_image(root / "b" / "0.png", seed=2)
    target = {
        "file name": root / "a" / f"{odd}.png",
        "sub-folder": root / "a" / odd / "1.png",
        "dataset folder": root / "a" / "1.png",
    }[where]
    write_image(target, seed=3)
    rc, out, err = run_cli(["check", root], capsys)
    assert rc == 0, err
    ds = load_dataset(root)
    assert len(ds) == 3 and ds.labels.count("a") == 2
    assert os.fsdecode(os.fsencode(str(target))) in ds.paths
    ds.to_frame()  # a pandas table of the paths works (it failed with UnicodeEncodeError)
    if where == "dataset folder":
        assert expected_display(raw) in ds.name and expected_display(raw) in err


# =============================================================================================
# datasets: folders that cannot be listed
# =============================================================================================


def _deny_listing(monkeypatch, denied: Path) -> None:
    """Make ``denied`` unlistable as a folder without permission would be (tests run as root,
    where chmod does not stop reading): os.scandir and os.listdir raise PermissionError."""
    real_scandir, real_listdir = os.scandir, os.listdir

    def check(path):
        if path is not None and os.path.abspath(os.fspath(path)) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))

    def scandir(path="."):
        check(path)
        return real_scandir(path)

    def listdir(path="."):
        check(path)
        return real_listdir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)


@pytest.mark.parametrize(
    "denied, loaded, classes",
    [
        pytest.param("cat", 2, {"dog"}, id="class-folder"),
        pytest.param("cat/sub", 4, {"cat", "dog"}, id="sub-folder-of-a-class"),
        pytest.param("train/cat", 2 + 2, {"cat", "dog"}, id="class-folder-of-a-split"),
    ],
)
def test_an_unreadable_folder_is_reported_with_the_permission_error(
    tmp_path, capsys, monkeypatch, denied, loaded, classes
):
    root = tmp_path / "data"
    split = denied.startswith("train")
    base = root / "train" if split else root
    for i in range(2):
        write_image(base / "cat" / f"{i}.png", seed=i)
        write_image(base / "dog" / f"{i}.png", seed=10 + i)
        write_image(base / "cat" / "sub" / f"{i}.png", seed=20 + i)
    if split:
        for i in range(2):
            write_image(root / "test" / "cat" / f"{i}.png", seed=30 + i)
    denied_path = (root / denied).resolve()
    _deny_listing(monkeypatch, denied_path)
    rc, out, err = run_cli(["check", root], capsys)
    assert rc == 0, err
    assert f"{denied_path}: folder cannot be listed (Permission denied)" in err
    ds = load_dataset(root)
    assert len(ds) == loaded and set(ds.labels) == classes
    rows = [p for p in ds.problems if p.kind == "unreadable_file"]
    assert [p.location for p in rows] == [str(denied_path)] and "check its permissions" in rows[0].reason


def test_an_unreadable_dataset_folder_is_exit_2_naming_it(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    write_image(root / "a" / "0.png")
    _deny_listing(monkeypatch, root.resolve())
    rc, out, err = run_cli(["check", root], capsys)
    assert rc == 2
    assert f"{root.resolve()} cannot be listed (Permission denied); check its permissions" in err
    assert "Traceback" not in err


# =============================================================================================
# manifests
# =============================================================================================


@pytest.fixture
def two_classes(tmp_path) -> Path:
    """tmp/imgs/{a,b}/{0,1,2}.png, six different images."""
    for c, label in enumerate("ab"):
        for i in range(3):
            write_image(tmp_path / "imgs" / label / f"{i}.png", seed=10 * c + i)
    return tmp_path / "imgs"


UNCLOSED_QUOTES = [
    # (lines of the manifest, lines reported as bad_csv, images loaded per class)
    pytest.param(
        ["path,label", "a/0.png,a", '"a/1.png,a', "a/2.png,a", "b/0.png,b", 'b/1.png,"b"', "b/2.png,b"],
        [3],
        {"a": 2, "b": 3},
        id="closed-later-by-a-quoted-cell",
    ),
    pytest.param(
        ["path,label", "a/0.png,a", 'a/1.png,"a', "a/2.png,a", "b/0.png,b", "b/1.png,b", "b/2.png,b"],
        [3],
        {"a": 2, "b": 3},
        id="never-closed",
    ),
    pytest.param(
        ["path,label", "a/0.png,a", '"a/1.png,a', "a/2.png,a", "b/0.png,b", 'b/1.png,b"', "b/2.png,b"],
        [3, 6],
        {"a": 2, "b": 2},
        id="closed-inside-a-later-cell",
    ),
    pytest.param(
        [
            "path,label,split",
            "a/0.png,a,train",
            'a/1.png,a,"train',
            "a/2.png,a,test",
            "b/0.png,b,",
            "b/1.png,b,test",
            "b/2.png,b,train",
        ],
        [3],
        {"a": 2, "b": 3},
        id="in-the-split-column",
    ),
    pytest.param(
        ["path,label", "a/0.png,a", '"a/1.png,a', "", "a/2.png,a", "b/0.png,b", "b/1.png,b", "b/2.png,b"],
        [3],
        {"a": 2, "b": 3},
        id="with-a-blank-line-after",
    ),
]


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("lines, bad, per_class", UNCLOSED_QUOTES)
def test_an_unclosed_quote_is_reported_where_it_opens_and_the_other_rows_load(
    two_classes, lines, bad, per_class, newline
):
    manifest = two_classes / "m.csv"
    manifest.write_bytes(newline.join(lines + [""]).encode())
    ds = load_manifest(manifest)
    counts = {label: ds.labels.count(label) for label in sorted(set(ds.labels))}
    assert counts == per_class
    rows = [p for p in ds.problems if p.kind in ("bad_csv", "bad_row")]
    assert [p.location for p in rows] == [f"{manifest} line {n}" for n in bad]
    assert all(p.kind == "bad_csv" for p in rows)
    assert "quote opens on this line" in rows[0].reason and f"line {bad[0]}" in rows[0].reason


def test_check_names_the_line_of_an_unclosed_quote(two_classes, capsys):
    manifest = two_classes / "m.csv"
    manifest.write_text('path,label\na/0.png,a\n"a/1.png,a\na/2.png,a\nb/0.png,b\nb/1.png,b\n')
    rc, out, err = run_cli(["check", manifest], capsys)
    assert rc == 0, err
    assert f"{manifest} line 3: a quote opens on this line" in err
    assert "4 images in 2 classes" in err


@pytest.mark.parametrize(
    "labels, expected, null_row",
    [
        pytest.param(pd.array([0, 0, None, 1, 1, 1], dtype="Int64"), ["0", "0", "1", "1", "1"], 3, id="int-with-null"),
        pytest.param(pd.array([0, 0, 0, 1, 1, 1], dtype="Int64"), ["0", "0", "0", "1", "1", "1"], None, id="int"),
        pytest.param(np.array([0.0, 0.0, np.nan, 1.0, 1.0, 1.0]), ["0", "0", "1", "1", "1"], 3, id="float-with-nan"),
        pytest.param(
            pd.array([10, 10, 10, None, 20, 20], dtype="Int32"), ["10", "10", "10", "20", "20"], 4, id="int32-with-null"
        ),
    ],
)
def test_parquet_integer_labels_stay_integers_and_a_null_is_named(two_classes, labels, expected, null_row):
    manifest = two_classes / "m.parquet"
    pd.DataFrame({"path": [f"{c}/{i}.png" for c in "ab" for i in range(3)], "label": labels}).to_parquet(manifest)
    ds = load_manifest(manifest)
    assert ds.labels == expected
    bad = [p for p in ds.problems if p.kind == "bad_row"]
    if null_row is None:
        assert bad == []
    else:
        assert [p.location for p in bad] == [f"{manifest} row {null_row}"] and "empty label" in bad[0].reason


def test_parquet_null_path_is_named(two_classes):
    manifest = two_classes / "m.parquet"
    pd.DataFrame({"path": ["a/0.png", None, "b/0.png"], "label": ["a", "a", "b"]}).to_parquet(manifest)
    ds = load_manifest(manifest)
    assert ds.labels == ["a", "b"]
    assert [(p.location, p.kind) for p in ds.problems if p.kind == "bad_row"] == [(f"{manifest} row 2", "bad_row")]
    assert "empty path" in ds.problems[0].reason


def test_a_manifest_cell_escaped_against_formulas_reads_back(two_classes):
    manifest = two_classes / "m.csv"
    manifest.write_text("path,label\na/0.png,'=SUM(A1)\na/1.png,'-1\nb/0.png,'b\n")
    ds = load_manifest(manifest)
    assert ds.labels == ["=SUM(A1)", "-1", "'b"]  # only the escaping apostrophe is removed


# =============================================================================================
# zip archives
# =============================================================================================


def make_zip(path: Path, entries: list[tuple[str, bytes]], links: dict[str, str] | None = None) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in entries:
                zf.writestr(name, data)
            for name, target in (links or {}).items():
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, target)
    return path


LONG = "n" * 300
BAD_ZIPS = [
    # (entries, entries reported as bad_archive_entry, images loaded per class)
    pytest.param(
        [
            ("d/a/x", b"plain bytes"),
            ("d/a/x/y.png", png_bytes(1)),
            ("d/a/1.png", png_bytes(2)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        ["d/a/x"],
        {"a": 2, "b": 2},
        id="file-then-folder-of-the-same-name",
    ),
    pytest.param(
        [
            ("d/a/x/y.png", png_bytes(1)),
            ("d/a/x", b"plain bytes"),
            ("d/a/1.png", png_bytes(2)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        ["d/a/x"],
        {"a": 2, "b": 2},
        id="folder-then-file-of-the-same-name",
    ),
    pytest.param(
        [
            ("d\\a\\x", b"plain bytes"),
            ("d/a/x/y.png", png_bytes(1)),
            ("d/a/1.png", png_bytes(2)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        ["d\\a\\x"],
        {"a": 2, "b": 2},
        id="backslash-file-and-folder",
    ),
    pytest.param(
        [
            (f"d/a/{LONG}.png", png_bytes(1)),
            ("d/a/1.png", png_bytes(2)),
            ("d/a/2.png", png_bytes(5)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        [f"d/a/{LONG}.png"],
        {"a": 2, "b": 2},
        id="300-character-file-name",
    ),
    pytest.param(
        [
            (f"d/{LONG}/1.png", png_bytes(1)),
            ("d/a/1.png", png_bytes(2)),
            ("d/a/2.png", png_bytes(5)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        [f"d/{LONG}/1.png"],
        {"a": 2, "b": 2},
        id="300-character-folder-name",
    ),
    pytest.param(
        [
            ("d/a/1.png", png_bytes(1)),
            ("d/a/1.png", png_bytes(6)),
            ("d/a/2.png", png_bytes(2)),
            ("d/b/1.png", png_bytes(3)),
            ("d/b/2.png", png_bytes(4)),
        ],
        ["d/a/1.png"],
        {"a": 2, "b": 2},
        id="name-listed-twice",
    ),
]


@pytest.mark.parametrize("entries, bad, per_class", BAD_ZIPS)
def test_bad_zip_entries_are_skipped_and_the_rest_loads(tmp_path, capsys, entries, bad, per_class):
    archive = make_zip(tmp_path / "data.zip", entries)
    before = archive.read_bytes()
    rc, out, err = run_cli(["check", archive], capsys)
    assert rc == 0, err
    for name in bad:
        assert f"{archive}:{name}" in err
    ds = load_dataset(archive)
    assert {label: ds.labels.count(label) for label in sorted(set(ds.labels))} == per_class
    rows = [p for p in ds.problems if p.kind == "bad_archive_entry"]
    assert [p.location for p in rows] == [f"{archive}:{name}" for name in bad]
    assert all("re-create the archive" in p.reason for p in rows)
    assert archive.read_bytes() == before
    if "twice" in rows[0].reason:  # the first of the two entries is the one used
        first = next(p for p in ds.paths if p.endswith("/a/1.png"))
        assert Path(first).read_bytes() == entries[0][1]


def test_an_uploaded_zip_with_a_file_and_folder_clash_loads_in_the_app(tmp_path):
    from app.services import load_uploaded_zip

    data = make_zip(tmp_path / "up.zip", BAD_ZIPS[0].values[0]).read_bytes()
    ds = load_uploaded_zip(data, "up.zip", workspace=tmp_path / "ws")
    assert len(ds) == 4
    assert [p.kind for p in ds.problems if p.kind == "bad_archive_entry"] == ["bad_archive_entry"]


@pytest.mark.parametrize(
    "entries, links, named",
    [
        pytest.param(
            [("../x/1.png", png_bytes(1)), ("/abs/1.png", png_bytes(2))],
            {},
            ["../x/1.png", "/abs/1.png"],
            id="dotdot-and-absolute",
        ),
        pytest.param(
            [("C:/win/1.png", png_bytes(1))],
            {"d/a/link.png": "/etc/passwd"},
            ["C:/win/1.png", "d/a/link.png"],
            id="drive-letter-and-link",
        ),
        pytest.param([(f"d/a/{LONG}.png", png_bytes(1))], {}, [f"d/a/{LONG}.png"], id="only-an-over-long-name"),
    ],
)
def test_a_zip_with_only_refused_entries_names_them(tmp_path, capsys, entries, links, named):
    archive = make_zip(tmp_path / "bad.zip", entries, links)
    rc, out, err = run_cli(["check", archive], capsys)
    assert rc == 2
    assert "no image files at all" not in err
    for name in named:
        assert f"{archive}:{name}" in err
    with pytest.raises(DatasetError, match="left out"):
        load_dataset(archive)


# =============================================================================================
# features files (select)
# =============================================================================================


def _npy_renamed(path: Path) -> None:
    np.save(path.with_suffix(".npy"), np.ones((4, 3), dtype=np.float32))
    path.with_suffix(".npy").rename(path)


def _truncated(path: Path) -> None:
    save_npz(path, make_features())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


BAD_FEATURE_FILES = [
    # (writer of the file, phrases the message must contain)
    pytest.param(_npy_renamed, ["is a single .npy array, not a .npz archive"], id="npy-renamed-npz"),
    pytest.param(
        lambda p: p.write_text("path,label\nx.png,cat\n"),
        ["is not a .npz archive", "coreset-studio embed"],
        id="text-file",
    ),
    pytest.param(lambda p: p.write_bytes(b""), ["is empty (0 bytes)"], id="empty-file"),
    pytest.param(
        lambda p: p.write_bytes(pickle.dumps({"feat_m": [[1.0]], "labels": ["a"]})),
        ["is not a .npz archive", "pickle, which is never loaded"],
        id="pickle-file",
    ),
    pytest.param(_truncated, ["damaged or truncated .npz archive"], id="truncated-npz"),
    pytest.param(
        lambda p: save_npz(p, {"feat_m": np.ones((2, 2)), "labels": np.array([{"a": 1}, 2], dtype=object)}),
        ["array 'labels' holds Python objects", "never loaded"],
        id="object-labels",
    ),
    pytest.param(
        lambda p: save_npz(p, {"feat_m": np.array([["1", "2"], ["3", "x"]]), "labels": np.array(["a", "b"])}),
        ["model 'm' are not numbers (dtype <U1)", ".astype(numpy.float32)"],
        id="string-features",
    ),
    pytest.param(
        lambda p: save_npz(p, {"feat_m": np.ones((2, 2), dtype=complex), "labels": np.array(["a", "b"])}),
        ["model 'm' are not numbers (dtype complex128)"],
        id="complex-features",
    ),
    pytest.param(
        lambda p: save_npz(p, {"feat_m": np.zeros((2, 2), dtype="datetime64[D]"), "labels": np.array([0, 1])}),
        ["model 'm' are not numbers (dtype datetime64[D])"],
        id="datetime-features",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(labels=np.array([b"a"] * 8 + [b"\xff"] * 8))),
        ["labels row 8 is not UTF-8 text", "b'\\xff'"],
        id="byte-labels-not-utf8",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(scale=1e30)),
        ["would overflow float32", "rescale the features"],
        id="magnitude-1e30",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(scale=1e19, dim=8)),
        ["would overflow float32", "8-d features"],
        id="magnitude-1e19-8d",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(scale=1e39, dtype=np.float64)),
        ["beyond the float32 range", "rescale them"],
        id="float64-1e39",
    ),
    pytest.param(
        lambda p: save_npz(p, {**make_features(dtype=np.float64), "feat_m": np.where(np.eye(16, 4) > 0, -1e300, 1.0)}),
        ["beyond the float32 range", "-1e+300 at row 0, column 0"],
        id="float64-minus-1e300",
    ),
    pytest.param(
        lambda p: save_npz(p, {**make_features(), "feat_m": np.where(np.eye(16, 4) > 0, np.nan, 1.0)}),
        ["NaN or infinite values (first at row 0)"],
        id="nan-features",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(split=np.array(["test"] * 16))),
        ["has a split array but no 'train' rows (found: 16 'test')", "remove the split array"],
        id="split-only-test",
    ),
    pytest.param(
        lambda p: save_npz(p, make_features(split=np.array(["val"] * 10 + ["test"] * 6))),
        ["no 'train' rows (found: 10 'val', 6 'test')"],
        id="split-val-and-test",
    ),
    pytest.param(
        lambda p: save_npz(p, {"feat_m": np.ones((3, 2)), "labels": np.array([[0, 1, 2]])}),
        ["labels must be 1-D"],
        id="labels-2d",
    ),
]


@pytest.mark.parametrize("write, phrases", BAD_FEATURE_FILES)
def test_select_refuses_a_bad_features_file_with_exit_2(tmp_path, capsys, write, phrases):
    path = tmp_path / "features.npz"
    write(path)
    before = path.read_bytes()
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["select", path, "--method", "random", "--fraction", "0.5", "--out", out], capsys)
    assert rc == 2
    err = error_line(err)
    assert err.startswith("error: Features file ") and str(path) in err
    for phrase in phrases:
        assert phrase in err, err
    for unsafe in ("allow_pickle", "weights_only", "pickle.load"):
        assert unsafe not in err
    assert path.read_bytes() == before and not (out / "scores.csv").exists()


@pytest.mark.parametrize(
    "arrays, pool, labels",
    [
        pytest.param(
            make_features(labels=np.array([b"a"] * 8 + [b"caf\xc3\xa9"] * 8)), 16, {"a", "café"}, id="byte-labels-utf8"
        ),
        pytest.param(make_features(split=np.array([b"train"] * 12 + [b"test"] * 4)), 12, {"c0", "c1"}, id="byte-split"),
        pytest.param(make_features(scale=1e16), 16, {"c0", "c1"}, id="large-but-safe-magnitude"),
        pytest.param(make_features(split=np.array(["train"] * 6 + ["test"] * 10)), 6, {"c0"}, id="train-rows-only"),
    ],
)
def test_select_accepts_what_it_can_read(tmp_path, capsys, arrays, pool, labels):
    path = save_npz(tmp_path / "features.npz", arrays)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["select", path, "--method", "herding", "--fraction", "0.5", "--out", out], capsys)
    assert rc == 0, err
    sel = json.loads((out / "selection.json").read_text())
    assert sel["features"]["n_pool"] == pool
    assert set(pd.read_csv(out / "scores.csv")["label"].astype(str)) == labels


def test_byte_paths_decode_like_file_names(tmp_path):
    raw = [b"/data/caf\xe9.png", b"/data/ok.png"]
    fs = FeatureSet({"m": np.ones((2, 2))}, labels=["a", "b"], paths=np.array(raw))
    assert [os.fsencode(p) for p in fs.paths] == raw


def test_load_features_of_a_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(CoresetError, match="does not exist; create it with `coreset-studio embed`"):
        load_features(tmp_path / "nope.npz")


def test_the_selection_engine_reports_float32_range_and_overflow_from_python():
    labels = np.repeat(["a", "b"], 4)
    x = np.ones((8, 3))
    x[5, 2] = 5e38
    with pytest.raises(SelectionInputError, match="beyond the float32 range.*row 5, column 2"):
        run_selection("random", {"m": x}, labels, 0.5, device="cpu")
    with pytest.raises(SelectionInputError, match="up to 1e\\+25 .*row 5.*overflow float32"):
        run_selection("random", {"m": np.where(x > 1, 1e25, x).astype(np.float32)}, labels, 0.5, device="cpu")


# =============================================================================================
# options: manual budgets, --weights, selection.json, fractions that keep nothing
# =============================================================================================


@pytest.mark.parametrize(
    "count",
    [
        pytest.param("abc", id="text"),
        pytest.param(None, id="none"),
        pytest.param([1], id="list"),
        pytest.param("1e400", id="overflowing-text"),
        pytest.param(2.5, id="fraction"),
    ],
)
def test_a_bad_manual_count_names_the_class_and_the_count(count):
    labels = np.repeat(["cat", "dog"], 4)
    x = np.random.default_rng(0).normal(size=(8, 3))
    with pytest.raises(SelectionInputError) as info:
        run_selection(
            "random", {"m": x}, labels, 0.5, budget="manual", budget_counts={"cat": count, "dog": 1}, device="cpu"
        )
    assert f"count {count!r} of class 'cat' is not an integer" in str(info.value)


def test_a_manual_counts_file_that_is_not_utf8_is_exit_2(tmp_path, capsys):
    path = save_npz(tmp_path / "f.npz", make_features())
    counts = tmp_path / "counts.csv"
    counts.write_bytes(b"class,count\nc\xe90,2\nc1,2\n")
    rc, out, err = run_cli(
        [
            "select",
            path,
            "--method",
            "random",
            "--fraction",
            "0.5",
            "--budget",
            "manual",
            "--budget-counts",
            counts,
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert rc == 2
    assert f"Manual budget file {counts} is not UTF-8 text (byte 0xe9" in err


def _pickled_object(path: Path) -> None:
    path.write_bytes(pickle.dumps(Path("not-a-state-dict")))


BAD_WEIGHTS = [
    pytest.param(
        "w.pth",
        lambda p: p.write_text("these are not weights"),
        "exists but is not a state dict (it is neither a safetensors file nor a torch.save file",
        id="text-pth",
    ),
    pytest.param(
        "w.pth", lambda p: p.write_bytes(b""), "exists but is not a state dict (it is empty (0 bytes))", id="empty-pth"
    ),
    pytest.param(
        "w.safetensors",
        lambda p: p.write_bytes(os.urandom(64)),
        "exists but is not a state dict (it does not start with a safetensors header)",
        id="random-safetensors",
    ),
    pytest.param(
        "w.pth",
        _pickled_object,
        "exists but is not a readable state dict (it holds pickled Python objects",
        id="pickled-object",
    ),
    pytest.param("wdir", lambda p: p.mkdir(), "is a folder, not a file", id="folder"),
]


@pytest.mark.parametrize("name, write, phrase", BAD_WEIGHTS)
def test_a_bad_weights_file_is_named_for_what_it_is(tmp_path, capsys, image_tree, name, write, phrase):
    weights = tmp_path / name
    write(weights)
    rc, out, err = run_cli(
        [
            "embed",
            image_tree,
            "--models",
            "effnet-lite0",
            "--weights",
            f"effnet-lite0={weights}",
            "--device",
            "cpu",
            "--out",
            tmp_path / "f.npz",
        ],
        capsys,
    )
    assert rc == 2
    assert str(weights.name) in err and phrase in err, err
    assert "does not exist" not in err and "weights_only=False" not in err
    assert ".safetensors, .bin or .pth state dict" in err
    assert not (tmp_path / "f.npz").exists()


@pytest.fixture
def eval_features(tmp_path) -> Path:
    from .test_evaluation_data import blobs

    return save_features(tmp_path / "features.npz", blobs((16, 12, 14), test_per_class=4))


@pytest.fixture
def selection_json(eval_features, tmp_path, capsys) -> Path:
    assert (
        main(["select", str(eval_features), "--method", "herding", "--fraction", "0.3", "--out", str(tmp_path / "sel")])
        == 0
    )
    capsys.readouterr()
    return tmp_path / "sel" / "selection.json"


def _drop(*keys):
    def edit(d):
        for k in keys:
            d.pop(k)
        return json.dumps(d)

    return edit


BAD_SELECTIONS = [
    pytest.param(_drop("params"), "has no 'params' entry", id="missing-params"),
    pytest.param(_drop("seed", "selected"), "has no 'seed', 'selected' entries", id="missing-seed-and-selected"),
    pytest.param(lambda d: json.dumps([d]), "holds a JSON list, not an object", id="a-list"),
    pytest.param(lambda d: json.dumps(d)[:-20], "is not valid JSON", id="truncated-json"),
    pytest.param(
        lambda d: json.dumps({**d, "budget_table": {"data": {}}}),
        "lacks the 'columns' part",
        id="budget-table-without-columns",
    ),
    pytest.param(
        lambda d: json.dumps({**d, "fraction": "lots"}), "has a malformed entry (ValueError", id="fraction-not-a-number"
    ),
]


@pytest.mark.parametrize("edit, phrase", BAD_SELECTIONS)
def test_evaluate_names_the_selection_file_and_what_it_lacks(
    eval_features, selection_json, tmp_path, capsys, edit, phrase
):
    bad = tmp_path / "edited.json"
    bad.write_text(edit(json.loads(selection_json.read_text())))
    rc, out, err = run_cli(
        ["evaluate", eval_features, "--selection", bad, "--seeds", "1", "--out", tmp_path / "ev"], capsys
    )
    assert rc == 2
    assert f"The selection file {bad}" in err and phrase in err, err
    assert "coreset-studio select" in err
    assert not err.rstrip().endswith("'params'")


@pytest.mark.parametrize("budget, fraction", [("paper", "0.01"), ("proportional", "0.005"), ("uniform", "0.005")])
def test_evaluate_of_a_fraction_that_keeps_nothing_says_so(eval_features, tmp_path, capsys, budget, fraction):
    rc, out, err = run_cli(
        [
            "evaluate",
            eval_features,
            "--method",
            "random",
            "--fraction",
            fraction,
            "--budget",
            budget,
            "--seeds",
            "2",
            "--out",
            tmp_path / "ev",
        ],
        capsys,
    )
    assert rc == 2
    assert f"random keeps 0 images at fraction {fraction}" in err and "raise --fraction" in err
    assert not (tmp_path / "ev" / "report.json").exists()


def test_run_keeps_an_empty_cell_and_notes_it(eval_features, tmp_path, capsys):
    rc, out, err = run_cli(
        [
            "run",
            eval_features,
            "--methods",
            "random",
            "--fractions",
            "0.01,0.5",
            "--seeds",
            "1",
            "--no-html",
            "--out",
            tmp_path / "run",
        ],
        capsys,
    )
    assert rc == 0, err
    assert "note: random keeps 0 images at fraction 0.01" in out
    assert "fraction 0.5" not in out.split("note:")[-1]


# =============================================================================================
# outputs
# =============================================================================================


def _fail(monkeypatch, target: str, code: int) -> None:
    """Make the atomic writer fail with ``code`` at ``target`` (tests run as root: chmod does not stop writes)."""
    import core.workspace as ws

    def boom(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if target == "mkstemp":
        monkeypatch.setattr(ws.tempfile, "mkstemp", boom)
    else:
        monkeypatch.setattr(ws.os, "fsync", boom)


OUTPUT_MODES = [
    # (how the output is made unwritable, phrase of the message)
    pytest.param("EACCES", "permission denied", id="read-only-folder"),
    pytest.param("EROFS", "is read-only", id="read-only-file-system"),
    pytest.param("ENOSPC", "is full (No space left on device)", id="disk-full"),
    pytest.param("EDQUOT", "is full (Disk quota exceeded)", id="quota-exceeded"),
    pytest.param("under-a-file", "is a file, not a folder", id="out-under-a-regular-file"),
    pytest.param("is-a-file", "it is an existing file, not a folder", id="out-is-an-existing-file"),
    pytest.param("folder-in-the-way", "a folder of that name is in the way", id="folder-named-like-an-output"),
]


def _unwritable(mode: str, out: Path, monkeypatch, file_name: str) -> Path:
    """Set up ``mode`` for an output folder ``out``; return the path the message must name."""
    if mode in ("EACCES", "EROFS"):
        _fail(monkeypatch, "mkstemp", getattr(errno, mode))
        return out / file_name
    if mode in ("ENOSPC", "EDQUOT"):
        _fail(monkeypatch, "fsync", getattr(errno, mode))
        return out / file_name
    if mode == "under-a-file":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.parent.joinpath("blocker").write_text("a regular file")
        return out.parent / "blocker"
    if mode == "is-a-file":
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("a regular file")
        return out
    out.joinpath(file_name).mkdir(parents=True)
    return out / file_name


@pytest.mark.parametrize("mode, phrase", OUTPUT_MODES)
def test_select_into_an_unwritable_output_is_exit_2(tmp_path, capsys, monkeypatch, mode, phrase):
    features = save_npz(tmp_path / "f.npz", make_features())
    out = tmp_path / "results" / "sel"
    if mode in ("EACCES", "EROFS", "ENOSPC", "EDQUOT"):
        out.mkdir(parents=True)
        (out / "scores.csv").write_text("the previous scores\n")
    named = _unwritable(mode, out, monkeypatch, "scores.csv")
    if mode == "under-a-file":
        out = named / "sel"
    rc, stdout, err = run_cli(["select", features, "--method", "random", "--fraction", "0.5", "--out", out], capsys)
    assert rc == 2
    message = error_line(err)
    assert message.startswith("error: Cannot write ") and str(named) in message and phrase in message, err
    assert "Traceback" not in err
    if (tmp_path / "results" / "sel" / "scores.csv").is_file():
        assert (tmp_path / "results" / "sel" / "scores.csv").read_text() == "the previous scores\n"
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("mode, phrase", [m for m in OUTPUT_MODES if m.id != "out-is-an-existing-file"])
def test_check_report_into_an_unwritable_place_is_exit_2(tmp_path, capsys, monkeypatch, image_tree, mode, phrase):
    folder = tmp_path / "reports"
    folder.mkdir()
    named = _unwritable(mode, folder, monkeypatch, "problems.csv")
    report = (named / "problems.csv") if mode == "under-a-file" else folder / "problems.csv"
    rc, out, err = run_cli(["check", image_tree, "--report", report], capsys)
    assert rc == 2
    assert str(named) in err and phrase in err, err
    assert no_temp_files(tmp_path)


def test_atomic_write_errors_stay_oserrors_and_leave_the_old_file(tmp_path, monkeypatch):
    from core.workspace import atomic_write_text

    target = tmp_path / "keep.txt"
    target.write_text("old")
    _fail(monkeypatch, "fsync", errno.ENOSPC)
    with pytest.raises(OSError) as info:
        atomic_write_text(target, "new")
    assert isinstance(info.value, OutputError) and info.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and no_temp_files(tmp_path)


# =============================================================================================
# exports
# =============================================================================================


@pytest.mark.parametrize("label", ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)"])
def test_subset_zip_manifest_escapes_formulas_and_still_loads(tmp_path, label):
    from core.export import subset_zip_bytes

    src = [write_image(tmp_path / "src" / f"{i}.png", seed=i) for i in range(2)]
    data = subset_zip_bytes([str(p) for p in src], [label, "plain"])
    zf = zipfile.ZipFile(io.BytesIO(data))
    rows = list(pd.read_csv(io.BytesIO(zf.read("manifest.csv")), dtype=str, keep_default_na=False)["label"])
    assert rows == ["'" + label, "plain"]
    zf.extractall(tmp_path / "unpacked")
    ds = load_dataset(tmp_path / "unpacked" / "manifest.csv")
    assert sorted(ds.labels) == sorted([label, "plain"])
