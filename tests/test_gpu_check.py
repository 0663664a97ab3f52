"""bench/gpu_check.py --dry-run: the GPU check script runs every step on the CPU and its checks hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_and_reports_every_check(tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CORESET_STUDIO_HOME": str(tmp_path / "ws")}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu_check.py"),
            "--dry-run",
            "--images",
            "8",
            "--data",
            str(tmp_path / "none"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["ok"] is True and report["images"] == 8
    assert report["graphs"]["ok"] and report["graphs"]["agreement_at_10"] >= 0.99
    assert set(report["models"]) == {"effnet-lite0", "timm:vit_tiny_patch16_224 (random init)"}
    for name, m in report["models"].items():
        assert m["features"]["fp32"]["max_rel_diff"] <= 1e-4, name
        assert m["features"]["fp16"]["min_cosine"] >= 0.999, name
        assert all(m["selection"].values()), name
        t = m["throughput"]
        assert t["end_to_end_img_s"] > 0 and t["model_only_img_s"] > 0
        assert t["ratio"] == pytest.approx(t["end_to_end_img_s"] / t["model_only_img_s"], rel=0.02, abs=0.002)
    assert report["jpeg_decode"]["decode_jpeg_img_s"] > 0
    ray = report["ray"]
    assert ray.get("skipped") or (ray["ok"] and ray["min_cosine"] >= 0.999)
    assert "all checks passed" in proc.stdout
