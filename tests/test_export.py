"""Exports: CSV escaping, report.html standalone with every chart, subset folder, source untouched."""

from __future__ import annotations

import csv
import hashlib
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from core.errors import CoresetError
from core.evaluation import EvalConfig, EvaluationReport, Evaluator, run_plan
from core.export import export_report, export_subset_folder
from core.export.html import pick_thumbnails, render_html, thumbnail_column

from .test_evaluation_data import blobs

NETWORK_MARKERS = (
    'src="http',
    "src='http",
    'href="http',
    "href='http",
    "url(http",
    "@import",
    "<link",
    "<script",
    "//cdn",
    'src="//',
    "fonts.googleapis",
)


def tree_digest(root: Path) -> str:
    """SHA-256 over every file's relative path, bytes and mode, and every folder name."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        st = path.lstat()
        h.update(f"{rel}\t{st.st_mode}\t{st.st_mtime_ns}\n".encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def plan_and_fs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("plan")
    fs = blobs(
        (14, 10, 12), labels=['=HYPERLINK("x")', "+plus", "cat"], test_per_class=3, paths_root=tmp_path / "source"
    )
    report = run_plan(
        fs, ["ram_apl", "kcenter@uniform"], [0.2, 0.5], EvalConfig(seeds=(0, 1, 2)), noise_levels=[0.0, 0.3]
    )
    return fs, report, tmp_path / "source"


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_csv_cells_are_escaped_against_formula_injection(tmp_path):
    fs = blobs((10, 10, 10, 10), labels=["=cmd", "+x", "-y", "@z"], paths_root=tmp_path / "src")
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1)))
    cell = ev.evaluate("ram_apl", 0.3)
    report = EvaluationReport(
        "evaluate",
        "now",
        {},
        {"selection_models": ["a", "b"]},
        ev.describe(),
        ev.config.to_dict(),
        {"fractions": [0.3], "noise_levels": [0.0]},
        [cell],
    )
    export_report(tmp_path / "out", report, fs, html=False)
    for name in ("scores.csv", "subset.csv"):
        rows = read_rows(tmp_path / "out" / name)
        col = rows[0].index("label")
        labels = {r[col] for r in rows[1:]}
        assert labels == {"'=cmd", "'+x", "'-y", "'@z"}
        assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows[1:] for cell in r if not _is_number(cell))
    subset = read_rows(tmp_path / "out" / "subset.csv")
    assert subset[0][:2] == ["path", "label"] and "score" in subset[0] and "ram" in subset[0]
    assert len(subset) - 1 == sum(cell.budget_counts.values())


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_export_never_touches_the_source_folder(plan_and_fs, tmp_path):
    fs, report, source = plan_and_fs
    before = tree_digest(source)
    written = export_report(tmp_path / "out", report, fs, copy_subset=tmp_path / "copy")
    export_report(tmp_path / "out2", report, fs, copy_subset=tmp_path / "links", link=True)
    assert tree_digest(source) == before
    assert "report.html" in written and (tmp_path / "out" / "selections").is_dir()
    primary = next(c for c in report.cells if c.method != "random")
    copied = sorted((tmp_path / "copy").rglob("*.png"))
    assert len(copied) == len(primary.selection["selected"])
    links = sorted((tmp_path / "links").rglob("*.png"))
    assert all(p.is_symlink() for p in links)
    # the class folder of each copied file is its (clean) label, made safe
    sel = np.asarray(primary.selection["selected"])
    for src, label in zip(fs.paths[sel], fs.labels[sel]):
        from core.export.folder import safe_name

        target = tmp_path / "copy" / safe_name(label) / Path(src).name
        assert target.read_bytes() == Path(src).read_bytes()
    # exporting into the dataset itself is refused, and leaves it unchanged
    with pytest.raises(CoresetError, match="contains the source"):
        export_report(tmp_path / "out3", report, fs, copy_subset=source)
    assert tree_digest(source) == before


def test_subset_folder_name_collisions(tmp_path):
    a = tmp_path / "a" / "img.png"
    b = tmp_path / "b" / "img.png"
    for p, data in ((a, b"A"), (b, b"B")):
        p.parent.mkdir(parents=True)
        p.write_bytes(data)
    out = export_subset_folder([str(a), str(b)], ["x", "x"], tmp_path / "dest")
    assert [Path(t).name for _, t in out] == ["img.png", "img_1.png"]
    assert (tmp_path / "dest" / "x" / "img.png").read_bytes() == b"A"
    assert (tmp_path / "dest" / "x" / "img_1.png").read_bytes() == b"B"
    assert not [p for p in (tmp_path / "dest").rglob("*") if p.name.endswith(".tmp")]


def test_subset_zip_has_the_folder_layout_a_manifest_and_reports_missing_files(tmp_path):
    import io
    import zipfile

    from core.datasets import load_dataset
    from core.export import subset_zip_bytes

    from .conftest import write_image

    src = [write_image(tmp_path / "src" / d / "img.png", seed=k) for k, d in enumerate(("a", "b", "c"))]
    gone = tmp_path / "src" / "gone.png"
    paths = [str(p) for p in src] + [str(gone)]
    labels = ["cat", "cat", "dog/x", "dog/x"]  # a name twice in one class; a label that is no folder name
    before = {p: p.read_bytes() for p in src}
    data = subset_zip_bytes(paths, labels, extra={"subset.csv": b"path,label\n"})
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(zf.namelist()) == [
        "MISSING.txt",
        "cat/img.png",
        "cat/img_1.png",
        "dog_x/img.png",
        "manifest.csv",
        "subset.csv",
    ]
    assert zf.read("cat/img_1.png") == before[src[1]] and zf.read("dog_x/img.png") == before[src[2]]
    assert str(gone) in zf.read("MISSING.txt").decode() and "FileNotFoundError" in zf.read("MISSING.txt").decode()
    assert {p: p.read_bytes() for p in src} == before  # sources only read
    # unpacked, it loads as a dataset through its manifest, with the original labels
    zf.extractall(tmp_path / "unpacked")
    ds = load_dataset(tmp_path / "unpacked" / "manifest.csv")
    assert len(ds) == 3 and sorted(ds.labels) == ["cat", "cat", "dog/x"]


def test_report_html_is_standalone_and_has_every_chart(plan_and_fs, tmp_path):
    fs, report, _ = plan_and_fs
    text = render_html(report, fs)
    for marker in NETWORK_MARKERS:
        assert marker not in text, marker
    assert "http://" not in text and "https://" not in text
    for chart in (
        'id="chart-accuracy-0"',
        'id="chart-accuracy-1"',
        'id="chart-budgets"',
        'id="chart-per-class"',
        "id='thumbnails'",
    ):
        assert chart in text
    assert text.count("data:image/png;base64,") >= 4
    assert "most representative kept" in text and "hardest dropped" in text
    # every method appears in the accuracy chart legend; error bars exist (3 seeds of random)
    for name in ("random", "ram_apl", "kcenter@uniform"):
        assert f">{name}</text>" in text
    assert "<title>Top-1 accuracy vs fraction (label noise 0.3)</title>" in text
    # well-formed enough for an HTML parser: every svg closed
    counts = {"svg": 0}

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "svg":
                counts["svg"] += 1

        def handle_endtag(self, tag):
            if tag == "svg":
                counts["svg"] -= 1

    P().feed(text)
    assert counts["svg"] == 0
    # labels are HTML-escaped
    assert '=HYPERLINK("x")' not in text


def test_thumbnail_ordering_uses_the_method_score():
    import pandas as pd

    table = pd.DataFrame(
        {
            "index": range(6),
            "label": ["a"] * 6,
            "score": [0.5, 0.1, 0.9, 0.3, 0.7, 0.2],
            "selected": [True, True, False, True, False, False],
            "order": [2, 0, -1, 1, -1, -1],
        }
    )
    assert thumbnail_column(table) == ("score", 1)
    groups = pick_thumbnails(table, k=1)
    assert groups["most representative kept"]["index"].tolist() == [1]
    assert groups["hardest kept"]["index"].tolist() == [0]
    assert groups["most representative dropped"]["index"].tolist() == [5]
    assert groups["hardest dropped"]["index"].tolist() == [2]
    gain = table.drop(columns="score").assign(gain=[1.0, 5.0, 0.1, 2.0, 0.2, 0.3])
    assert thumbnail_column(gain) == ("gain", -1)
    assert pick_thumbnails(gain, k=1)["most representative kept"]["index"].tolist() == [1]


def test_failed_write_leaves_the_previous_file(plan_and_fs, tmp_path, monkeypatch):
    fs, report, _ = plan_and_fs
    out = tmp_path / "out"
    export_report(out, report, fs)
    old = (out / "report.html").read_bytes()
    import core.export.html as html_mod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(html_mod, "render_html", lambda *a, **k: "x" * 10)
    import core.workspace as ws

    real_replace = os.replace
    monkeypatch.setattr(ws.os, "replace", boom)
    with pytest.raises(RuntimeError):
        export_report(out, report, fs)
    monkeypatch.setattr(ws.os, "replace", real_replace)
    assert (out / "report.html").read_bytes() == old
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("fmt, kind", [("png", "PNG"), ("jpeg", "JPEG")])
def test_thumbnail_data_uri_formats(tmp_path, fmt, kind):
    import base64
    import io

    from PIL import Image

    from core.export.html import thumbnail_data_uri

    from .conftest import write_image

    src = tmp_path / "big.jpg"
    Image.open(write_image(tmp_path / "x.png", size=(300, 200))).convert("RGB").save(src, quality=95)
    uri = thumbnail_data_uri(str(src), 64, fmt)
    head, data = uri.split(",", 1)
    assert head == f"data:image/{fmt};base64"
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.format == kind and max(im.size) == 64 and im.size == (64, 43)
    assert thumbnail_data_uri(str(tmp_path / "missing.png"), 64, fmt) is None
    _, data = thumbnail_data_uri(str(src), 64, fmt, square=True).split(",", 1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.size == (64, 64)  # centre-cropped
    small = write_image(tmp_path / "small.png", size=(28, 20))
    _, data = thumbnail_data_uri(str(small), 64, fmt, square=True).split(",", 1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        assert im.size == (20, 20)  # not enlarged
    with pytest.raises(ValueError, match="fmt"):
        thumbnail_data_uri(str(src), 64, "gif")
    # auto: JPEG when scaled down, PNG (lossless) when the image is already small
    assert thumbnail_data_uri(str(src), 64, "auto").startswith("data:image/jpeg;")
    tiny = write_image(tmp_path / "tiny.png", size=(28, 28))
    assert thumbnail_data_uri(str(tiny), 64, "auto").startswith("data:image/png;")


def test_thumbnails_follow_the_registry():
    """A method's score column and direction come from its registry entry; a greedy method
    (no score column) shows its first and last picks and the dropped images by label agreement."""
    import pandas as pd

    table = pd.DataFrame(
        {
            "index": range(6),
            "label": ["a"] * 6,
            "score": [0.5, 0.1, 0.9, 0.3, 0.7, 0.2],
            "herding_error": [0.2, float("nan"), 0.4, float("nan"), float("nan"), 0.1],
            "label_agreement": [0.9, 0.1, 0.5, 0.8, 0.3, 0.6],
            "selected": [True, False, True, False, False, True],
            "order": [1, -1, 2, -1, -1, 0],
        }
    )
    groups = pick_thumbnails(table, k=2, method="herding")
    assert groups["picked first"]["index"].tolist() == [5, 0]
    assert groups["picked last"]["index"].tolist() == [2, 0]
    assert groups["dropped, label most agreed"]["index"].tolist() == [3, 4]
    assert groups["dropped, label least agreed"]["index"].tolist() == [1, 4]
    # ram_apl declares score (low = representative): the same as the legacy column order
    g = pick_thumbnails(table, k=1, method="ram_apl")
    assert g["most representative kept"]["index"].tolist() == [5] and g["hardest dropped"]["index"].tolist() == [4]
    # min's registry entry is used even though herding_error would come first in the legacy list
    assert pick_thumbnails(table.drop(columns="score").assign(score=table["score"]), k=1, method="min")[
        "most representative kept"
    ]["index"].tolist() == [5]


def test_a_single_evaluation_chart_has_the_random_series(tmp_path):
    """report.html of one evaluated selection draws random beside the subset (not a lone dot)."""
    import time as _time

    from core.evaluation.plan import single_cell_report

    fs = blobs((12, 12, 12), test_per_class=3, paths_root=tmp_path / "src")
    ev = Evaluator(fs, EvalConfig(seeds=(0, 1, 2)))
    cell = ev.evaluate("herding", 0.5)
    text = render_html(single_cell_report(ev, cell, fs, started=_time.perf_counter()), fs)
    chart = text[text.index("chart-accuracy-0") :]
    chart = chart[: chart.index("</svg>")]
    assert "herding" in chart and "random (same per-class sizes)" in chart
    # a plan that evaluates random itself gets no second random line
    plan = run_plan(fs, ["herding", "random"], [0.5], EvalConfig(seeds=(0, 1)))
    text = render_html(plan, fs)
    assert "random (same per-class sizes)" not in text


def test_write_csv_in_chunks_equals_the_whole_text(tmp_path, monkeypatch):
    import pandas as pd

    from core.export import tables

    frame = pd.DataFrame(
        {
            "index": np.arange(10),
            "path": [f"img/{i}.png" for i in range(10)],
            "label": ["=cmd", "+x", "cat", "-1", "@a", "dog", "cat", "dog", "cat", "dog"],
            "score": np.linspace(0, 1, 10),
        }
    )
    monkeypatch.setattr(tables, "CSV_CHUNK_ROWS", 3)  # four chunks: the header must come once
    path = tables.write_csv(tmp_path / "t.csv", frame)
    text = path.read_text(encoding="utf-8")
    assert text == tables.csv_text(frame)
    assert text.count("index,path,label,score") == 1 and text.count("\n") == 11
    assert "'=cmd" in text and "'+x" in text
    tables.write_csv(tmp_path / "empty.csv", frame.iloc[:0])
    assert (tmp_path / "empty.csv").read_text() == "index,path,label,score\n"
