"""Dataset loaders: every layout, every problem kind, the fingerprint."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from core.datasets import Dataset, load_archive, load_dataset, load_demo, load_folder, load_manifest
from core.errors import DatasetError

from .conftest import write_image


def kinds(ds: Dataset) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in ds.problems:
        out.setdefault(p.kind, []).append(p.location)
    return out


# ---------------------------------------------------------------- layouts


def test_folder_per_class(image_tree):
    ds = load_dataset(image_tree)
    assert ds.source == "folder"
    assert len(ds) == 9
    assert ds.class_names == ["cat", "dog", "fox"]
    assert sorted(ds.labels) == ["cat"] * 3 + ["dog"] * 2 + ["fox"] * 4
    assert set(ds.splits) == {"train"}
    assert list(ds.codes) == [ds.class_names.index(label) for label in ds.labels]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in ds.paths)
    assert ds.image_sizes == [(32, 24)] * 9
    assert ds.problems == []


def test_folder_with_split_folders(tmp_path):
    root = tmp_path / "d"
    for split, n in (("train", 3), ("test", 2), ("validation", 1)):
        for label in ("a", "b"):
            for i in range(n):
                write_image(root / split / label / f"{i}.png", seed=hash((split, label, i)) % 1000)
    ds = load_folder(root)
    counts = ds.class_counts()
    assert counts.loc["a"].to_dict() == {"train": 3, "val": 1, "test": 2}
    assert counts.loc["b"].to_dict() == {"train": 3, "val": 1, "test": 2}
    assert list(ds.split_indices("test")) == [i for i, s in enumerate(ds.splits) if s == "test"]


def test_nested_images_belong_to_their_class_folder(tmp_path):
    write_image(tmp_path / "r" / "cat" / "sub" / "deep.png", seed=1)
    write_image(tmp_path / "r" / "cat" / "top.png", seed=2)
    write_image(tmp_path / "r" / "dog" / "x.png", seed=3)
    ds = load_folder(tmp_path / "r")
    assert sorted(zip(ds.labels, [Path(p).name for p in ds.paths])) == [
        ("cat", "deep.png"),
        ("cat", "top.png"),
        ("dog", "x.png"),
    ]


def test_csv_manifest_relative_and_absolute_paths(tmp_path, image_tree):
    a = image_tree / "cat" / "cat0.png"
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "Path, Label ,split\n"
        f"tree/cat/cat1.png,cat,train\n"
        f"{a},cat,test\n"
        "tree/dog/dog0.png,dog,\n"
        "tree/dog/dog1.png,dog,valid\n"
    )
    ds = load_manifest(manifest)
    assert [Path(p).name for p in ds.paths] == ["cat1.png", "cat0.png", "dog0.png", "dog1.png"]
    assert ds.splits == ["train", "test", "train", "val"]
    assert ds.root == tmp_path.resolve()
    assert ds.problems == []


def test_parquet_manifest(tmp_path, image_tree):
    manifest = tmp_path / "m.parquet"
    pd.DataFrame({"path": ["tree/cat/cat0.png", "tree/fox/fox1.png"], "label": ["cat", "fox"]}).to_parquet(manifest)
    ds = load_dataset(manifest)
    assert ds.labels == ["cat", "fox"] and ds.splits == ["train", "train"]


def test_folder_with_manifest_is_read_through_it(tmp_path, image_tree):
    (image_tree / "manifest.csv").write_text("path,label\ncat/cat0.png,kitten\n")
    ds = load_dataset(image_tree)
    assert ds.source == "manifest" and ds.labels == ["kitten"]


def make_zip(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def png_bytes(seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    img = Image.new("RGB", (8, 8), (seed * 40 % 256, seed * 90 % 256, 7))
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_zip_of_a_folder_tree(tmp_path, isolated_workspace):
    archive = make_zip(
        tmp_path / "pets.zip",
        {"pets/cat/1.png": png_bytes(1), "pets/cat/2.png": png_bytes(2), "pets/dog/1.png": png_bytes(3)},
    )
    ds = load_dataset(archive)
    assert ds.source == "zip" and ds.name == "pets.zip"
    assert sorted(ds.labels) == ["cat", "cat", "dog"]
    assert all(Path(p).is_relative_to(isolated_workspace) for p in ds.paths)
    again = load_dataset(archive)  # reuses the extraction
    assert again.fingerprint == ds.fingerprint and again.paths == ds.paths


def test_zip_with_manifest(tmp_path):
    archive = make_zip(
        tmp_path / "m.zip",
        {
            "labels.csv": b"path,label,split\nimg/a.png,x,train\nimg/b.png,y,test\n",
            "img/a.png": png_bytes(1),
            "img/b.png": png_bytes(2),
        },
    )
    ds = load_archive(archive)
    assert ds.labels == ["x", "y"] and ds.splits == ["train", "test"]


def test_zip_entries_escaping_the_target_are_rejected(tmp_path, isolated_workspace):
    outside = tmp_path / "escaped.png"
    archive = make_zip(
        tmp_path / "evil.zip",
        {
            "ok/cat/1.png": png_bytes(1),
            "ok/cat/2.png": png_bytes(2),
            "../escaped.png": png_bytes(3),
            "ok/../../../escaped2.png": png_bytes(4),
            "/abs/escaped3.png": png_bytes(5),
            "C:\\win\\escaped4.png": png_bytes(6),
        },
        links={"ok/cat/link.png": "/etc/passwd"},
    )
    ds = load_archive(archive)
    assert len(ds) == 2
    rejected = kinds(ds)["unsafe_archive_entry"]
    assert len(rejected) == 5
    assert any("link.png" in loc for loc in rejected)
    assert not outside.exists()
    assert not any(p.name.startswith("escaped") for p in tmp_path.rglob("*") if p != archive)
    assert not any(p.is_symlink() for p in isolated_workspace.rglob("*"))


def test_zip_over_the_size_cap_is_refused(tmp_path):
    archive = make_zip(tmp_path / "big.zip", {"a/x/1.png": png_bytes(1), "a/x/2.bin": b"\0" * 100_000})
    with pytest.raises(DatasetError, match="above the cap"):
        load_archive(archive, max_bytes=50_000)


def test_damaged_zip_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    with pytest.raises(DatasetError, match="not a zip archive"):
        load_dataset(bad)


def test_demo_dataset():
    ds = load_demo()
    assert ds.source == "demo" and len(ds) == 1200 and len(ds.class_names) == 10
    counts = ds.class_counts()
    assert (counts["train"] == 100).all() and (counts["test"] == 20).all()
    assert ds.problems == []
    with Image.open(ds.paths[0]) as img:
        assert img.size == (28, 28)


# ---------------------------------------------------------------- problems


def test_every_image_problem_is_reported_and_the_rest_loads(tmp_path, monkeypatch):
    root = tmp_path / "r"
    for i in range(3):
        write_image(root / "good" / f"{i}.png", seed=i)
    jpg = write_image(root / "good" / "whole.jpg", seed=9, size=(64, 64), fmt="JPEG")
    data = jpg.read_bytes()
    (root / "bad" / "trunc.jpg").parent.mkdir(parents=True)
    (root / "bad" / "trunc.jpg").write_bytes(data[: len(data) // 2])
    png = write_image(root / "bad" / "src.png", seed=10, size=(64, 64))
    (root / "bad" / "trunc.png").write_bytes(png.read_bytes()[:200])
    png.unlink()
    (root / "bad" / "fake.jpg").write_text("I am text, not a JPEG")
    (root / "bad" / "notes.txt").write_text("hello")
    (root / "bad" / "empty.png").write_bytes(b"")
    write_image(root / "huge" / "big.png", seed=11, size=(300, 300))
    (root / "empty_class").mkdir()
    write_image(root / "solo" / "only.png", seed=12)
    write_image(root / "stray.png", seed=13)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200 * 200)

    ds = load_folder(root)
    found = kinds(ds)
    assert sorted(Path(p).name for p in found["truncated_image"]) == ["trunc.jpg", "trunc.png"]
    assert sorted(Path(p).name for p in found["not_an_image"]) == ["fake.jpg", "notes.txt"]
    assert [Path(p).name for p in found["empty_file"]] == ["empty.png"]
    assert [Path(p).name for p in found["image_too_large"]] == ["big.png"]
    assert sorted(found["empty_class"]) == ["bad", "empty_class", "huge"]
    assert found["single_image_class"] == ["solo"]
    assert [Path(p).name for p in found["outside_class_folder"]] == ["stray.png"]
    assert sorted(ds.labels) == ["good"] * 4 + ["solo"]
    severity = {p.kind: p.severity for p in ds.problems}
    assert severity["single_image_class"] == "warning" and severity["truncated_image"] == "skipped"
    assert all(p.reason for p in ds.problems)
    assert set(ds.problems_frame().columns) == {"location", "kind", "severity", "reason"}


def test_manifest_row_problems(tmp_path, image_tree):
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,label,split\n"  # line 1
        "tree/cat/cat0.png,cat,train\n"  # 2 ok
        "tree/cat/missing.png,cat,train\n"  # 3 missing file
        "tree/cat/cat0.png,dog,train\n"  # 4 duplicate path, different label
        "tree/dog/dog0.png,dog,holdout\n"  # 5 unknown split
        "tree/dog/dog1.png,dog\n"  # 6 wrong cell count
        ",dog,train\n"  # 7 empty path
        "tree/fox/fox0.png,fox,test\n"  # 8 ok
    )
    ds = load_manifest(manifest)
    found = kinds(ds)
    assert found["missing_file"] == [f"{manifest} line 3"]
    assert found["duplicate_path"] == [f"{manifest} line 4"]
    assert "different label" in next(p.reason for p in ds.problems if p.kind == "duplicate_path")
    assert found["unknown_split"] == [f"{manifest} line 5"]
    assert found["bad_row"] == [f"{manifest} line 6", f"{manifest} line 7"]
    assert ds.labels == ["cat", "fox"]


def test_non_utf8_manifest_reports_the_line_and_reads_the_rest(tmp_path, image_tree):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(b"path,label\ntree/cat/cat0.png,cat\ntree/dog/dog0.png,chien \xe9\ntree/fox/fox0.png,fox\n")
    ds = load_manifest(manifest)
    assert kinds(ds)["not_utf8"] == [f"{manifest} line 3"]
    assert "0xe9" in ds.problems[0].reason
    assert ds.labels == ["cat", "fox"]


def test_utf8_bom_and_utf16_manifests(tmp_path, image_tree):
    text = "path,label\ntree/cat/cat0.png,chat\u00e9\n"
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "u16.csv").write_text(text, encoding="utf-16")
    assert load_manifest(tmp_path / "bom.csv").labels == ["chat\u00e9"]
    assert load_manifest(tmp_path / "u16.csv").labels == ["chat\u00e9"]


def test_manifest_without_required_columns(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,category\na.png,x\n")
    with pytest.raises(DatasetError, match=r"has columns \['file', 'category'\].*missing: path, label"):
        load_manifest(manifest)


def test_nothing_usable_is_an_error_that_says_what_was_found(tmp_path):
    root = tmp_path / "r"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_text("not an image")
    (root / "a" / "y.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"found 2 candidate file\(s\).*not_an_image.*empty_file"):
        load_folder(root)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_duplicate_content_is_a_warning(image_tree):
    shutil.copy(image_tree / "cat" / "cat0.png", image_tree / "dog" / "copy.png")
    ds = load_folder(image_tree)
    dup = [p for p in ds.problems if p.kind == "duplicate_content"]
    assert len(dup) == 1 and dup[0].severity == "warning"
    assert len(ds) == 10


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_tracks_added_removed_and_changed_files(image_tree):
    base = load_folder(image_tree).fingerprint
    assert load_folder(image_tree).fingerprint == base  # stable

    extra = write_image(image_tree / "cat" / "new.png", seed=99)
    added = load_folder(image_tree).fingerprint
    extra.unlink()
    assert load_folder(image_tree).fingerprint == base

    (image_tree / "dog" / "dog0.png").unlink()
    removed = load_folder(image_tree).fingerprint
    write_image(image_tree / "dog" / "dog0.png", seed=12345)  # same name, other content
    changed = load_folder(image_tree).fingerprint
    assert len({base, added, removed, changed}) == 4

    copy = image_tree.parent / "moved"
    shutil.copytree(image_tree, copy)
    assert load_folder(copy).fingerprint == changed  # relative paths: moving the folder keeps it


def test_source_folder_is_never_modified(image_tree):
    before = {p: p.read_bytes() for p in image_tree.rglob("*") if p.is_file()}
    load_dataset(image_tree)
    after = {p: p.read_bytes() for p in image_tree.rglob("*") if p.is_file()}
    assert before == after


def test_unreadable_file_is_reported_with_what_to_do(image_tree, monkeypatch):
    """A file the process may not read (root ignores chmod, so open() is made to refuse)."""
    import builtins

    from core.datasets import images

    locked = str(image_tree / "dog" / "dog1.png")
    real_open = builtins.open

    def guarded_open(path, *args, **kwargs):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", guarded_open, raising=False)
    ds = load_folder(image_tree)
    problem = kinds(ds)["unreadable_file"]
    assert problem == [locked]
    assert "permissions" in next(p.reason for p in ds.problems if p.kind == "unreadable_file")
    assert len(ds) == 8
