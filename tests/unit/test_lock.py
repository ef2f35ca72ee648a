"""requirements.lock agrees with pyproject.toml (:mod:`mobiledx.lockfile`), and each way it can disagree is found."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mobiledx.lockfile import (
    DIGEST_PREFIX,
    FIX,
    LOCK,
    PYPROJECT,
    declarations,
    lock_problems,
    locked_entries,
    normalise,
    pyproject_digest,
    stamp,
    unsupported_pythons,
)


def test_the_lock_agrees_with_pyproject():
    problems = lock_problems(PYPROJECT, LOCK)
    assert not problems, "\n".join(problems)


def _copies(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """pyproject.toml and the lock copied into tmp_path, the copy's digest re-stamped, and the problems that
    copy already has (none when the real files agree): each test below asserts what its edit adds."""
    pyproject, lock = tmp_path / "pyproject.toml", tmp_path / "requirements.lock"
    pyproject.write_text(PYPROJECT.read_text())
    lock.write_text(LOCK.read_text())
    stamp(lock, pyproject)
    return pyproject, lock, lock_problems(pyproject, lock)


def _added(pyproject: Path, lock: Path, baseline: list[str]) -> list[str]:
    return [problem for problem in lock_problems(pyproject, lock) if problem not in baseline]


def _a_pinned_dependency(pyproject: Path) -> tuple[str, str]:
    """The first ``name==version`` of [project].dependencies, as written."""
    for declared in declarations(pyproject)["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", declared.strip())
        if match:
            return match[1], match[2]
    raise AssertionError("no == pin in [project].dependencies")


def test_a_changed_pin_without_make_lock_fails(tmp_path):
    pyproject, lock, baseline = _copies(tmp_path)
    name, version = _a_pinned_dependency(pyproject)
    text = pyproject.read_text()
    pyproject.write_text(text.replace(f'"{name}=={version}"', f'"{name}=={version}.post99"', 1))
    added = _added(pyproject, lock, baseline)
    assert len(added) == 2, added
    assert added[0].startswith("pyproject.toml's dependencies changed since requirements.lock was generated")
    assert added[0].endswith(FIX)
    assert added[1] == (f"requirements.lock has {name}=={version}, pyproject.toml (dependencies) asks for "
                        f"=={version}.post99: {FIX}")


def test_a_new_dependency_without_make_lock_fails(tmp_path):
    pyproject, lock, baseline = _copies(tmp_path)
    text = pyproject.read_text()
    assert "\ntest = [" in text
    pyproject.write_text(text.replace("\ntest = [", '\ntest = ["not-a-locked-package>=1", ', 1))
    added = _added(pyproject, lock, baseline)
    assert len(added) == 2, added
    assert added[0].startswith("pyproject.toml's dependencies changed") and added[0].endswith(FIX)
    assert added[1] == f"not-a-locked-package (test in pyproject.toml) is not in requirements.lock: {FIX}"


def test_a_hand_edited_lock_fails_even_with_a_matching_digest(tmp_path):
    """The digest alone would pass a lock edited by hand: the pins and hashes are checked entry by entry."""
    pyproject, lock, baseline = _copies(tmp_path)
    name, version = _a_pinned_dependency(pyproject)
    text = lock.read_text()
    assert f"\n{normalise(name)}=={version} " in text
    text = text.replace(f"\n{normalise(name)}=={version} ", f"\n{normalise(name)}==0.0.1 ", 1)
    text = re.sub(r"(\nzipp==\S+) \\\n(\s+--hash=\S+ \\\n)*\s+--hash=\S+", r"\1", text, count=1)
    text += "--extra-index-url file:///opt/pypi/simple\n"
    lock.write_text(text)
    added = _added(pyproject, lock, baseline)
    assert len(added) == 3, added
    assert added[0].startswith("requirements.lock names something local to one machine "
                               "('--extra-index-url file:///opt/pypi/simple')")
    assert added[1].startswith("requirements.lock: zipp==") and added[1].endswith(f"has no --hash: {FIX}")
    assert added[2] == f"requirements.lock has {name}==0.0.1, pyproject.toml (dependencies) asks for =={version}: {FIX}"


def test_a_lock_without_a_digest_fails(tmp_path):
    pyproject, lock, baseline = _copies(tmp_path)
    lock.write_text("".join(line for line in lock.read_text().splitlines(keepends=True)
                            if not line.startswith(DIGEST_PREFIX)))
    assert _added(pyproject, lock, baseline) == [
        f"requirements.lock has no '{DIGEST_PREFIX.strip()}' header line: {FIX}"]


def test_comments_and_other_tables_do_not_change_the_digest(tmp_path):
    pyproject, _, _ = _copies(tmp_path)
    before = pyproject_digest(pyproject)
    text = pyproject.read_text()
    assert "\ndependencies = [\n" in text and "line-length = 120" in text
    text = text.replace("\ndependencies = [\n", "\ndependencies = [  # a comment\n", 1)
    pyproject.write_text(text.replace("line-length = 120", "line-length = 100"))
    assert pyproject_digest(pyproject) == before


def _installed() -> list[tuple[str, str, str | None]]:
    from importlib.metadata import distributions

    return [(d.metadata["Name"], d.version, d.metadata.get("Requires-Python")) for d in distributions()]


def test_every_locked_package_installed_here_supports_this_python():
    """`make setup` installs the lock, so this is the lock's choice for the running Python."""
    python = "{}.{}.{}".format(*sys.version_info[:3])
    assert unsupported_pythons(_installed(), locked_entries(LOCK.read_text()), python) == []


def test_a_release_that_excludes_the_python_is_found():
    """What LOCK_CONSTRAINTS is for: backports.strenum 1.3.1 (via ai-edge-litert) says <3.11, uv took it anyway."""
    locked = locked_entries("backports-strenum==1.3.1 --hash=sha256:" + "0" * 64 + "\nsix==1.17.0 --hash=sha256:"
                            + "1" * 64 + "\n")
    installed = [("backports.strenum", "1.3.1", ">=3.8.6,<3.11"), ("six", "1.17.0", ">=2.7"),
                 ("mobiledx", "0.1.0", ">=3.10,<3.14")]
    assert unsupported_pythons(installed, locked, "3.11.7") == [
        "backports.strenum==1.3.1 is locked but says Requires-Python >=3.8.6,<3.11, not 3.11.7: add "
        "'backports-strenum<1.3.1' to LOCK_CONSTRAINTS in the Makefile and run `make lock`"]
    assert unsupported_pythons(installed, locked, "3.10.4") == []


