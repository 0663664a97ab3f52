"""Provenance recorded with every result: package versions and the machine."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from . import __version__

PACKAGES = ("numpy", "torch", "torchvision", "timm", "open_clip_torch", "scikit-learn", "pandas", "pillow")


def package_versions() -> dict[str, str]:
    """Versions of Python, coreset-studio and the packages results depend on."""
    versions = {"python": sys.version.split()[0], "coreset-studio": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_description() -> dict[str, str]:
    """Platform, processor and CPU count of this machine."""
    import os

    return {"platform": platform.platform(), "machine": platform.machine(), "cpus": str(os.cpu_count())}
