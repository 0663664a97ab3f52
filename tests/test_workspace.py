"""Atomic writes and the workspace folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.workspace import atomic_save_npz, atomic_write_text, atomic_write_with, default_workspace


def test_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def boom(fh):
        fh.write(b"half of the new con")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write_with(target, boom)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_written_files_get_the_umask_mode_not_owner_only(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (os.stat(path).st_mode & 0o777) == 0o644


def test_npz_round_trip(tmp_path):
    path = atomic_save_npz(tmp_path / "a.npz", x=np.arange(3))
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]


def test_workspace_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CORESET_STUDIO_HOME", str(tmp_path / "ws"))
    assert default_workspace() == (tmp_path / "ws").resolve()


def test_umask_is_read_without_changing_it(monkeypatch):
    import os

    from core.workspace import _umask

    old = os.umask(0o027)
    try:
        changes = []
        real = os.umask
        monkeypatch.setattr(os, "umask", lambda m: changes.append(m) or real(m))
        assert _umask() == 0o027
        assert changes == []  # read from /proc/self/status on Linux: the process umask never moved
    finally:
        os.umask(old)
