"""Check an environment against requirements/lock.txt: every locked package that is installed has the locked
version, and nothing is installed that the lock does not name (besides the project, pip and what `make setup`
installs on purpose outside it). `make setup` runs this after installing; exit 1 lists every difference.

Usage: python scripts/check_lock.py [LOCK]
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

LOCK = Path(__file__).resolve().parents[1] / "requirements" / "lock.txt"
# Installed by `make setup` outside the lock: the project itself, the installer, lmms-eval (--no-deps, pinned in
# the Makefile) and the lock tool of `make lock`.
OUTSIDE_LOCK = {"nvila", "pip", "lmms-eval", "uv"}


def read_lock(path: Path) -> dict[str, Version]:
    """Package name (canonical) -> locked version, for the lines whose marker holds on this interpreter."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        parsed = Requirement(requirement.strip())
        specifiers = list(parsed.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{path}:{number}: a lock line pins one version with ==, got {line!r}")
        pins[canonicalize_name(parsed.name)] = Version(specifiers[0].version)
    return pins


def public(version: str) -> Version:
    """The version without its local label: torch 2.13.0+cpu is the locked 2.13.0."""
    return Version(Version(version).public)


def differences(pins: dict[str, Version], installed: dict[str, str]) -> list[str]:
    """One line per installed package whose version differs from the lock, or that the lock does not name."""
    problems = []
    for name, version in sorted(installed.items()):
        if name in OUTSIDE_LOCK:
            continue
        if name not in pins:
            problems.append(f"{name}=={version} is installed but not in the lock")
        elif public(version) != pins[name]:
            problems.append(f"{name}=={version} is installed; the lock says {pins[name]}")
    return problems


def installed_distributions() -> dict[str, str]:
    """Canonical name -> version of every distribution in this interpreter's environment."""
    return {canonicalize_name(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else LOCK
    problems = differences(read_lock(lock), installed_distributions())
    for problem in problems:
        print(f"check_lock: {problem}", file=sys.stderr)
    if problems:
        print(f"check_lock: the environment differs from {lock}; `make clean setup` rebuilds it", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
