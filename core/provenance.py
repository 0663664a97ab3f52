"""Provenance recorded with every result: package versions and the machine."""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

from . import __version__

#: Packages whose versions an evaluation report and a features file record.
PACKAGES = ("numpy", "torch", "torchvision", "timm", "open_clip_torch", "scikit-learn", "pandas", "pillow")
#: Packages whose imported module's ``__version__`` names the build (CUDA / CPU variant) and is recorded instead.
BUILD_VERSION_MODULES = ("torch", "torchvision")
#: Packages whose versions a selection result records.
SELECTION_PACKAGES = ("numpy", "torch", "pandas")


def package_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Versions of Python, coreset-studio and ``packages`` (installed distribution versions,
    the build string for torch / torchvision once imported; ``not installed`` for a missing one): the one version recorder of results. Looked up
    once per process and package list (a fresh dict each call)."""
    return dict(_versions(tuple(packages), tuple(m in sys.modules for m in BUILD_VERSION_MODULES)))


@functools.cache
def _versions(packages: tuple[str, ...], imported: tuple[bool, ...]) -> tuple[tuple[str, str], ...]:
    versions = {"python": sys.version.split()[0], "coreset-studio": __version__}
    for name in packages:
        module = sys.modules.get(name) if name in BUILD_VERSION_MODULES else None
        if module is not None and getattr(module, "__version__", None):
            versions[name] = str(module.__version__)  # e.g. 2.14.1+cu130: the build, not only the release
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return tuple(versions.items())


def machine_description() -> dict[str, str]:
    """Platform, processor and CPU count of this machine."""
    import os

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
