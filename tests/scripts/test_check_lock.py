"""requirements/lock.txt covers pyproject.toml, and scripts/check_lock.py finds every way an environment can
differ from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def check_lock(load_script):
    return load_script("check_lock")


def project_requirements() -> list[Requirement]:
    """The requirements `make setup` installs: the project's dependencies and its `dev` extra, nested extras
    (`nvila[lmms,fp8]`) expanded."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    requirements, pending, seen = [Requirement(r) for r in project["dependencies"]], ["dev"], set()
    while pending:
        extra = pending.pop()
        seen.add(extra)
        for raw in extras[extra]:
            requirement = Requirement(raw)
            if canonicalize_name(requirement.name) == "nvila":
                pending += [e for e in requirement.extras if e not in seen]
            else:
                requirements.append(requirement)
    return requirements


def test_the_lock_pins_every_project_requirement_inside_its_range(check_lock):
    pins = check_lock.read_lock(ROOT / "requirements" / "lock.txt")
    requirements = project_requirements()
    assert {"torch", "transformers", "pytest", "torchao", "pandas"} <= {canonicalize_name(r.name) for r in requirements}
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is a project requirement but not in the lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"the lock pins {name}=={pins[name]} outside pyproject's {requirement.specifier}: run `make lock`"
        )


def test_the_lock_keeps_torch_at_its_pin(check_lock):
    pins = check_lock.read_lock(ROOT / "requirements" / "lock.txt")
    pinned = [line for line in (ROOT / "requirements" / "pins.in").read_text().splitlines() if line.startswith("torch")]
    assert pinned == [f"torch=={pins['torch']}"]


def test_differences_name_each_mismatch(check_lock):
    pins = {"torch": Version("2.13.0"), "numpy": Version("2.4.6"), "tqdm": Version("4.67.1")}
    installed = {"torch": "2.13.0+cpu", "numpy": "2.5.0", "requests": "2.32.0", "nvila": "0.1.0", "pip": "23.2.1"}
    assert check_lock.differences(pins, installed) == [
        "numpy==2.5.0 is installed; the lock says 2.4.6",
        "requests==2.32.0 is installed but not in the lock",
    ]
    assert check_lock.differences(pins, {"torch": "2.13.0", "tqdm": "4.67.1"}) == []


def test_read_lock_follows_markers_and_refuses_ranges(check_lock, tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text(
        "# header\n"
        "av==18.1.0 ; python_full_version < '3.0'\n"
        "av==19.0.2 ; python_full_version >= '3.0'\n"
        "Typing_Extensions==4.16.0\n"
        "    # via torch\n"
    )
    assert check_lock.read_lock(lock) == {"av": Version("19.0.2"), "typing-extensions": Version("4.16.0")}
    lock.write_text("numpy>=2\n")
    with pytest.raises(ValueError, match=r"lock\.txt:1: a lock line pins one version"):
        check_lock.read_lock(lock)


def test_main_reports_an_environment_that_differs(check_lock, tmp_path, capsys):
    lock = tmp_path / "lock.txt"
    lock.write_text("pytest==0.0.1\n")
    assert check_lock.main([str(lock)]) == 1
    err = capsys.readouterr().err
    assert "pytest==" in err and "the lock says 0.0.1" in err and "make clean setup" in err
