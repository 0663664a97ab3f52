"""AppTest: the Data page (demo, server folder with roots, zip upload, manifest + zip, errors)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from app import services
from core.errors import CoresetError

from ._app_helpers import errors, metrics, start, state
from .conftest import write_image


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv(services.ROOTS_ENV, str(tmp_path))
    return tmp_path


def _zip_of(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return buf.getvalue()


def test_demo_is_preloaded_with_counts_chart_grid_and_problem_report():
    at = start()
    assert metrics(at) == {"Images": "1200", "Classes": "10", "Skipped files": "0", "Warnings": "0"}
    st_ = state(at)
    assert st_.dataset_label == "demo" and len(st_.dataset_key) == 64
    chart = at.get("plotly_chart")
    assert len(chart) == 1 and "Images per class" in chart[0].proto.spec
    assert at.selectbox(key="data_class").options[:2] == ["ankle_boot", "bag"]
    assert len(at.get("image")) == 24  # the thumbnail grid
    # the demo button reloads the same dataset (same fingerprint)
    key = st_.dataset_key
    at.button(key="data_load_demo").click().run()
    assert state(at).dataset_key == key and not errors(at)


def test_folder_inside_roots_loads(roots, image_tree):
    at = start()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(image_tree))
    at.button(key="data_load_folder").click().run()
    assert not errors(at) and not at.exception
    assert metrics(at)["Images"] == "9" and metrics(at)["Classes"] == "3"
    assert state(at).dataset_label == str(image_tree)
    assert at.selectbox(key="data_class").options == ["cat", "dog", "fox"]


def test_folder_outside_roots_is_refused_and_keeps_the_demo(roots, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere")
    write_image(outside / "a" / "x.png")
    at = start()
    before = state(at).dataset_key
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(outside))
    at.button(key="data_load_folder").click().run()
    assert len(errors(at)) == 1
    msg = errors(at)[0]
    assert "outside the folders" in msg and str(roots.resolve()) in msg and services.ROOTS_ENV in msg
    assert state(at).dataset_key == before and metrics(at)["Images"] == "1200"
    assert not at.exception


def test_bad_folder_shows_an_error(roots):
    at = start()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(roots / "nope"))
    at.button(key="data_load_folder").click().run()
    assert len(errors(at)) == 1 and "does not exist" in errors(at)[0]
    # a folder with no images at all: DatasetError, shown, demo kept
    (roots / "empty" / "cls").mkdir(parents=True)
    at.text_input(key="data_folder").set_value(str(roots / "empty"))
    at.button(key="data_load_folder").click().run()
    assert len(errors(at)) == 1 and "Loading the folder failed" in errors(at)[0]
    assert metrics(at)["Images"] == "1200" and not at.exception


def test_zip_upload_and_broken_zip(image_tree):
    at = start()
    at.radio(key="data_source").set_value("Upload a zip").run()
    at.file_uploader(key="data_zip").set_value(("broken.zip", b"PK\x03\x04 this is not a zip", "application/zip"))
    at.run()
    at.button(key="data_load_zip").click().run()
    assert len(errors(at)) == 1 and "not a zip archive" in errors(at)[0]
    assert metrics(at)["Images"] == "1200" and not at.exception
    at.file_uploader(key="data_zip").set_value(("tree.zip", _zip_of(image_tree), "application/zip"))
    at.run()
    at.button(key="data_load_zip").click().run()
    assert not errors(at) and metrics(at)["Images"] == "9"
    assert state(at).dataset_label == "tree.zip"


def test_manifest_plus_zip_upload_reports_missing_files(image_tree):
    csv = (
        "path,label,split\ncat/cat0.png,cat,train\ncat/cat1.png,cat,train\ndog/dog0.png,dog,\n"
        "fox/fox0.png,fox,test\nfox/missing.png,fox,train\n"
    )
    at = start()
    at.radio(key="data_source").set_value("Upload a manifest + zip").run()
    at.file_uploader(key="data_manifest_csv").set_value(("labels.csv", csv.encode(), "text/csv"))
    at.file_uploader(key="data_manifest_zip").set_value(("images.zip", _zip_of(image_tree), "application/zip"))
    at.run()
    at.button(key="data_load_manifest").click().run()
    assert not errors(at) and not at.exception
    assert metrics(at)["Images"] == "4" and metrics(at)["Skipped files"] == "1"
    problems = at.dataframe[0].value
    assert list(problems.columns) == ["file", "kind", "severity", "reason"]
    assert problems["kind"].tolist().count("missing_file") == 1 and "line 6" in " ".join(problems["file"])


def test_roots_from_streamlit_secrets_and_the_variable_wins(image_tree, tmp_path_factory, monkeypatch):
    monkeypatch.delenv(services.ROOTS_ENV, raising=False)
    outside = tmp_path_factory.mktemp("elsewhere")
    write_image(outside / "a" / "x.png")
    at = start()
    at.secrets["coreset_studio"] = {"roots": [str(image_tree)]}
    at.radio(key="data_source").set_value("Folder on the server").run()
    assert any(f"`{image_tree.resolve()}`" in c.value for c in at.caption)
    at.text_input(key="data_folder").set_value(str(outside))
    at.button(key="data_load_folder").click().run()
    assert len(errors(at)) == 1 and str(image_tree.resolve()) in errors(at)[0]
    at.text_input(key="data_folder").set_value(str(image_tree))
    at.button(key="data_load_folder").click().run()
    assert not errors(at) and metrics(at)["Images"] == "9"
    # CORESET_STUDIO_ROOTS overrides the secrets file
    monkeypatch.setenv(services.ROOTS_ENV, str(outside))
    at.run()
    assert any(f"`{outside.resolve()}`" in c.value for c in at.caption)
    assert services.allowed_roots(configured=[str(image_tree)]) == [outside.resolve()]


def test_roots_default_and_symlink_escape(tmp_path, monkeypatch):
    monkeypatch.delenv(services.ROOTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    roots = services.allowed_roots()
    assert roots[0] == tmp_path.resolve() and len(roots) == 2  # cwd and the workspace
    inside = tmp_path / "data"
    inside.mkdir()
    assert services.check_server_path(str(inside), roots) == inside.resolve()
    assert services.check_server_path("data", roots) == inside.resolve()  # relative to the cwd
    link = tmp_path / "escape"
    link.symlink_to("/etc")
    with pytest.raises(CoresetError, match="outside"):
        services.check_server_path(str(link), roots)
    with pytest.raises(CoresetError, match="Type the path"):
        services.check_server_path("  ", roots)


def test_paths_in_a_server_manifest_are_confined_to_the_roots(roots, tmp_path_factory):
    """A manifest inside the roots naming images outside them: refused rows, one reason for
    an existing and a made-up path, and no thumbnail of the outside image."""
    outside = tmp_path_factory.mktemp("elsewhere")
    secret = write_image(outside / "secret.png", seed=5)
    write_image(roots / "data" / "cat" / "a.png", seed=1)
    write_image(roots / "data" / "cat" / "b.png", seed=2)
    rows = [str(secret), "/etc/hostname", str(outside / "made-up.png"), "../../../../../../../../etc/hostname"]
    (roots / "data" / "manifest.csv").write_text(
        "path,label\ncat/a.png,cat\ncat/b.png,cat\n" + "".join(f"{r},cat\n" for r in rows)
    )
    at = start()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(roots / "data"))
    at.button(key="data_load_folder").click().run()
    assert not errors(at) and not at.exception
    assert metrics(at)["Images"] == "2" and metrics(at)["Skipped files"] == str(len(rows))
    problems = at.dataframe[0].value
    assert problems["kind"].tolist() == ["outside_allowed_roots"] * len(rows)
    assert len({r.replace(repr(p), "") for r, p in zip(problems["reason"], rows)}) == 1
    assert len(at.get("image")) == 2  # the two images inside the roots, not the secret one


@pytest.mark.slow
@pytest.mark.usefixtures("fake_app_model")
def test_names_that_are_not_utf8_go_through_every_page(roots):
    """Class folders and files named with bytes that are not UTF-8 (Latin-1 'café', a stray 0xff):
    every page draws without an exception, and the names are shown with \\xNN escapes."""
    import os

    from ._app_helpers import FAKE

    root = roots / "latin1"
    for cls, tag in ((b"caf\xe9", 0), (b"th\xe9", 1), (b"plain", 2)):
        folder = Path(os.fsdecode(bytes(root).__add__(b"/") + cls))
        for i in range(8):
            write_image(folder / os.fsdecode(b"\xff" + f"{i:02d}.png".encode()), seed=10 * tag + i)
    at = start()
    at.radio(key="data_source").set_value("Folder on the server").run()
    at.text_input(key="data_folder").set_value(str(root))
    at.button(key="data_load_folder").click().run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    assert metrics(at)["Images"] == "24"
    assert "caf\\xe9" in at.selectbox(key="data_class").options
    at.switch_page("views/models.py").run()
    at.multiselect(key="models_pick").set_value([FAKE]).run()
    at.button(key="models_compute").click().run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    at.switch_page("views/select.py").run()
    at.selectbox(key="select_method").set_value("herding")
    at.slider(key="select_fraction").set_value(50)
    at.button(key="select_run").click().run()
    assert not errors(at) and not at.exception, (errors(at), at.exception)
    for page in ("views/explore.py", "views/evaluate.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
