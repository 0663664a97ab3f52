"""Allowed roots: no image outside them is read, through a manifest, a link or an upload, and
the problem report never tells whether a refused path exists. The CLI (no roots) reads all."""

from __future__ import annotations

import builtins
import io
import os
import zipfile
from pathlib import Path

import pytest

from app import services
from core.datasets import OUTSIDE_KIND, load_dataset, load_folder, load_manifest
from core.datasets import images as images_module
from core.errors import DatasetError

from .conftest import write_image

IMAGE_PROBLEMS = {"missing_file", "not_an_image", "empty_file", "unreadable_file", "truncated_image", "corrupt_image"}


@pytest.fixture
def tree(tmp_path) -> tuple[Path, Path]:
    """(root, outside): root/cat/{a,b}.png, root/dog/c.png inside; outside/secret.png (an image)
    and outside/notes.txt (text) next to it, outside any root."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(root / "cat" / "a.png", seed=1)
    write_image(root / "cat" / "b.png", seed=2)
    write_image(root / "dog" / "c.png", seed=3)
    write_image(outside / "secret.png", seed=4)
    (outside / "notes.txt").write_text("not an image")
    return root, outside


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Every path the image checker opens (resolved), to show nothing outside is read."""
    seen: list[str] = []
    real_open = builtins.open

    def recording_open(path, *args, **kwargs):
        seen.append(os.path.realpath(os.fspath(path)))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(images_module, "open", recording_open, raising=False)
    return seen


def refused(ds) -> list:
    return [p for p in ds.problems if p.kind == OUTSIDE_KIND]


def assert_same_reason(problems, shown: list[str]) -> None:
    """One reason text for every refused path once the path as written is taken out."""
    assert len(problems) == len(shown)
    texts = {p.reason.replace(repr(s), "<path>") for p, s in zip(problems, shown)}
    assert len(texts) == 1, texts
    assert all(p.severity == "skipped" for p in problems)
    assert all(repr(s) in p.reason for p, s in zip(problems, shown))  # names the file


def assert_nothing_read_under(outside: Path, ds, opened: list[str]) -> None:
    out = os.path.realpath(outside)
    assert not any(p.startswith(out) for p in ds.paths)
    assert not any(p.startswith(out) for p in opened), opened
    assert not any(p.kind in IMAGE_PROBLEMS for p in ds.problems), ds.problems


# ---------------------------------------------------------------- manifests


def test_manifest_absolute_paths_outside_the_roots_are_refused(tree, opened):
    root, outside = tree
    rows = [str(outside / "secret.png"), str(outside / "notes.txt"), str(outside / "ghost.png"), "/etc/hostname"]
    manifest = root / "m.csv"
    manifest.write_text("path,label\ncat/a.png,cat\ndog/c.png,dog\n" + "".join(f"{r},cat\n" for r in rows))
    ds = load_dataset(manifest, allowed_roots=[root])
    assert sorted(Path(p).name for p in ds.paths) == ["a.png", "c.png"]
    assert [p.location for p in refused(ds)] == [f"{manifest.resolve()} line {n}" for n in (4, 5, 6, 7)]
    assert_same_reason(refused(ds), rows)
    assert_nothing_read_under(outside, ds, opened)
    # the report is the same once the outside files are gone: it cannot tell what exists
    before = ds.problems_frame()
    (outside / "secret.png").unlink()
    (outside / "notes.txt").unlink()
    again = load_dataset(manifest, allowed_roots=[root])
    assert again.problems_frame().equals(before) and again.fingerprint == ds.fingerprint


def test_manifest_dotdot_paths_outside_the_roots_are_refused(tree, opened):
    root, outside = tree
    rows = [
        "../outside/secret.png",
        "cat/../../outside/notes.txt",
        "../outside/ghost.png",
        "../../../../../../../../etc/hostname",
    ]
    manifest = root / "m.csv"
    manifest.write_text("path,label\ncat/a.png,cat\ncat/../dog/c.png,dog\n" + "".join(f"{r},cat\n" for r in rows))
    ds = load_manifest(manifest, allowed_roots=[root])
    assert sorted(Path(p).name for p in ds.paths) == ["a.png", "c.png"]  # ".." inside the root is fine
    assert_same_reason(refused(ds), rows)
    assert_nothing_read_under(outside, ds, opened)
    # without roots (the CLI) the same manifest reads the outside image
    free = load_manifest(manifest)
    assert any(Path(p).name == "secret.png" for p in free.paths)


def test_manifest_that_is_a_link_out_of_the_root_is_not_read(tree):
    root, outside = tree
    (outside / "manifest.csv").write_text("path,label\n" + f"{root}/cat/a.png,leaked\n")
    (root / "manifest.csv").symlink_to(outside / "manifest.csv")
    ds = load_dataset(root, allowed_roots=[root])
    assert ds.source == "folder" and "leaked" not in ds.labels
    assert [p.location for p in refused(ds)] == [str(root.resolve() / "manifest.csv")]
    # a link to a manifest that does not exist reads the same
    (outside / "manifest.csv").unlink()
    assert load_dataset(root, allowed_roots=[root]).problems_frame().equals(ds.problems_frame())
    with pytest.raises(DatasetError, match="outside the folders") as exists:
        load_manifest(root / "manifest.csv", allowed_roots=[root])
    (outside / "manifest.csv").write_text("path,label\n")
    with pytest.raises(DatasetError, match="outside the folders") as missing:
        load_manifest(root / "manifest.csv", allowed_roots=[root])
    assert str(exists.value) == str(missing.value)


def test_a_source_outside_the_roots_gets_one_message_whether_or_not_it_exists(tree):
    root, outside = tree
    with pytest.raises(DatasetError) as real:
        load_dataset(outside, allowed_roots=[root])
    with pytest.raises(DatasetError) as ghost:
        load_dataset(outside.parent / "nowhere", allowed_roots=[root])
    assert "outside the folders" in str(real.value)
    assert str(real.value).replace(str(outside), "P") == str(ghost.value).replace(str(outside.parent / "nowhere"), "P")


def test_tilde_user_paths_do_not_crash_and_are_refused_under_roots(tree):
    root, _ = tree
    manifest = root / "m.csv"
    manifest.write_text("path,label\ncat/a.png,cat\n~no_such_user_xq/a.png,cat\n~root/a.png,cat\n")
    ds = load_manifest(manifest, allowed_roots=[root])
    assert_same_reason(refused(ds), ["~no_such_user_xq/a.png", "~root/a.png"])
    free = load_manifest(manifest)  # CLI: no crash, a missing file
    assert [p.kind for p in free.problems if p.kind != "single_image_class"] == ["missing_file", "missing_file"]


# ---------------------------------------------------------------- links in folders


def test_file_links_out_of_the_root_are_refused(tree, opened):
    root, outside = tree
    (root / "cat" / "link.png").symlink_to(outside / "secret.png")
    (root / "cat" / "text.png").symlink_to(outside / "notes.txt")
    (root / "cat" / "dangling.png").symlink_to(outside / "ghost.png")
    (root / "stray.png").symlink_to(outside / "secret.png")  # top level: would be outside_class_folder
    (root / "dog" / "inner.png").symlink_to(root / "cat" / "a.png")  # a link inside the root is fine
    ds = load_folder(root, allowed_roots=[root])
    assert sorted(Path(p).name for p in ds.paths) == ["a.png", "b.png", "c.png", "inner.png"]
    names = [Path(p.location).name for p in refused(ds)]
    assert sorted(names) == ["dangling.png", "link.png", "stray.png", "text.png"]
    assert_same_reason(refused(ds), names)
    assert_nothing_read_under(outside, ds, opened)
    assert not any(p.kind == "outside_class_folder" for p in ds.problems)
    # without roots (the CLI), the links are read as before
    free = load_folder(root)
    assert "link.png" in [Path(p).name for p in free.paths]
    assert "dangling.png" in [Path(p.location).name for p in free.problems if p.kind == "missing_file"]


def test_folder_links_out_of_the_root_are_refused_without_listing_them(tree, opened):
    root, outside = tree
    write_image(outside / "cls" / "deep.png", seed=7)
    (root / "evil").symlink_to(outside)  # a class folder that is a link
    (root / "cat" / "sub").symlink_to(outside / "cls")  # a folder link inside a class
    (root / "ghost").symlink_to(outside / "no-such-folder")  # a link to nothing
    ds = load_dataset(root, allowed_roots=[root])
    assert ds.class_names == ["cat", "dog"] and len(ds) == 3
    names = [Path(p.location).name for p in refused(ds)]
    assert sorted(names) == ["evil", "ghost", "sub"]
    assert_same_reason(refused(ds), names)
    assert_nothing_read_under(outside, ds, opened)
    text = ds.problems_frame().to_csv()
    assert "secret" not in text and "notes" not in text and "deep" not in text  # nothing listed
    assert not any(p.location in ("evil", "ghost") for p in ds.problems)  # no empty_class for them


def test_split_folder_links_out_of_the_root_are_refused(tmp_path, opened):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(root / "train" / "cat" / "a.png", seed=1)
    write_image(root / "train" / "cat" / "b.png", seed=2)
    write_image(outside / "cat" / "x.png", seed=3)
    (root / "test").symlink_to(outside)
    (root / "val").symlink_to(tmp_path / "no-such-folder")
    (root / "notes.txt").symlink_to(outside / "cat" / "x.png")  # would be an unknown_split warning
    ds = load_folder(root, allowed_roots=[root])
    assert ds.splits == ["train", "train"]
    names = [Path(p.location).name for p in refused(ds)]
    assert sorted(names) == ["notes.txt", "test", "val"]
    assert_same_reason(refused(ds), names)
    assert_nothing_read_under(outside, ds, opened)


# ---------------------------------------------------------------- zips and uploads


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _png(seed: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, seed * 90 % 256, 7)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploaded_zip_whose_manifest_names_server_paths(tree, opened):
    _, outside = tree
    rows = ["/etc/hostname", "/no/such/made-up.png", str(outside / "secret.png"), "../../../../../../etc/hostname"]
    csv = "path,label\nimg/a.png,x\nimg/b.png,y\n" + "".join(f"{r},x\n" for r in rows)
    data = _zip({"labels.csv": csv.encode(), "img/a.png": _png(1), "img/b.png": _png(2)})
    ds = services.load_uploaded_zip(data, "up.zip")
    assert sorted(ds.labels) == ["x", "y"]
    assert_same_reason(refused(ds), rows)
    assert_nothing_read_under(outside, ds, opened)
    assert not any(p.startswith("/etc") for p in opened)


def test_uploaded_csv_manifest_naming_server_paths(tree, opened):
    root, outside = tree
    rows = [
        "/etc/hostname",
        str(outside / "secret.png"),
        str(root / "cat" / "a.png"),
        "/made/up/file.png",
        "../../../../../../../etc/hostname",
    ]
    csv = "path,label\nimg/a.png,x\nimg/b.png,y\n" + "".join(f"{r},x\n" for r in rows)
    data = _zip({"img/a.png": _png(1), "img/b.png": _png(2)})
    ds = services.load_uploaded_manifest(csv.encode(), "labels.csv", data, "images.zip")
    assert sorted(ds.labels) == ["x", "y"]
    assert_same_reason(refused(ds), rows)
    assert_nothing_read_under(outside, ds, opened)
    assert not any(p.startswith("/etc") or p.startswith(os.path.realpath(root)) for p in opened)


def test_server_zip_contents_are_confined_to_its_extraction_folder(tree, opened):
    root, _ = tree
    other = str(root.resolve() / "cat" / "a.png")  # inside the roots, but outside the zip
    csv = f"path,label\nimg/a.png,x\nimg/b.png,y\n{other},x\n"
    (root / "d.zip").write_bytes(_zip({"labels.csv": csv.encode(), "img/a.png": _png(5), "img/b.png": _png(6)}))
    ds = services.load_server_path(str(root / "d.zip"), [root.resolve()])
    assert sorted(ds.labels) == ["x", "y"]
    assert_same_reason(refused(ds), [other])


def test_server_manifest_with_outside_paths_through_the_app_service(tree, monkeypatch, opened):
    root, outside = tree
    monkeypatch.setenv(services.ROOTS_ENV, str(root))
    manifest = root / "m.csv"
    manifest.write_text(f"path,label\ncat/a.png,cat\ncat/b.png,cat\n{outside}/secret.png,cat\n{outside}/nope.png,cat\n")
    ds = services.load_server_path(str(manifest), services.allowed_roots())
    assert len(ds) == 2
    assert_same_reason(refused(ds), [f"{outside}/secret.png", f"{outside}/nope.png"])
    assert_nothing_read_under(outside, ds, opened)


# ---------------------------------------------------------------- the CLI is not restricted


def test_cli_check_still_reads_absolute_paths_anywhere(tree, tmp_path, capsys):
    from core.cli import main

    root, outside = tree
    write_image(outside / "more.png", seed=9)
    manifest = tmp_path / "elsewhere" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text(f"path,label\n{root}/cat/a.png,cat\n{outside}/secret.png,cat\n{outside}/more.png,dog\n")
    report = tmp_path / "problems.csv"
    assert main(["check", str(manifest), "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "3 images in 2 classes" in err
    assert OUTSIDE_KIND not in report.read_text()
