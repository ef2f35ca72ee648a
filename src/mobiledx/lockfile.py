"""The lock file's contract: requirements.lock pins every package with hashes and agrees with pyproject.toml.

``make setup`` installs exactly the lock, so a dependency added or changed in pyproject.toml without
``make lock`` would never be installed (or a stale pin would be): :func:`lock_problems` says so, and
``tests/unit/test_lock.py`` fails on it. Standard library only (``packaging`` where installed), so the
Makefile runs this file by path before the virtualenv exists (``installer`` on any Python 3, the others
read TOML with tomllib, Python >= 3.11):

- ``python src/mobiledx/lockfile.py lock-inputs``: what ``uv pip compile`` locks besides pyproject's
  dependencies: ``[build-system].requires`` (the editable install builds without isolation, from the
  locked setuptools) and the installer ``uv`` itself, one a line;
- ``python src/mobiledx/lockfile.py stamp requirements.lock``: records the digest of pyproject's
  dependency declarations in the lock's header;
- ``python src/mobiledx/lockfile.py installer requirements.lock``: the locked ``uv`` line with its
  hashes, which pip installs into a new virtualenv before uv installs the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # src/mobiledx/lockfile.py -> the repository
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
EXTRA = "test"  # the optional-dependencies group the lock includes (`make lock`: --extra test)
INSTALLER = "uv"
DIGEST_PREFIX = "# pyproject-digest: sha256:"
FIX = "run `make lock` and commit requirements.lock"
# Options that would tie the lock to one machine (its local indexes, wheel folders, constraints files).
MACHINE_LOCAL = re.compile(r"^\s*(-i|--index-url|--extra-index-url|-f|--find-links|-c|--constraint|--trusted-host)\b"
                           r"|file:/|/etc/xdg/pip|/opt/", re.MULTILINE)


def declarations(pyproject: Path) -> dict:
    """What the lock is resolved from: dependencies, the test extra, the build requirements, requires-python."""
    import tomllib  # Python >= 3.11, as keras 3.15 is (the lock's lowest Python)

    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    return {"requires-python": project.get("requires-python", ""),
            "dependencies": list(project.get("dependencies", [])),
            EXTRA: list(project.get("optional-dependencies", {}).get(EXTRA, [])),
            "build-system": list(data.get("build-system", {}).get("requires", []))}


def pyproject_digest(pyproject: Path) -> str:
    """sha256 of the declarations (not of the file: comments, formatting and the other tables don't count)."""
    canonical = json.dumps(declarations(pyproject), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Locked:
    name: str  # normalised (PEP 503)
    version: str
    marker: str
    hashes: tuple[str, ...]
    line: str  # the entry on one line, as pip reads it


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_entries(text: str) -> list[Locked]:
    """The lock's requirement entries (continuation lines joined, comments dropped)."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line and not current:
            continue
        current += " " + line.rstrip("\\").strip() if current else line.rstrip("\\").strip()
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    if current:
        logical.append(current.strip())
    entries = []
    for line in logical:
        if line.startswith("-"):
            continue  # an option line: MACHINE_LOCAL reports the ones that matter
        hashes = tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
        requirement = re.sub(r"\s*--hash=\S+", "", line).strip()
        spec, _, marker = requirement.partition(";")
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*(\S+)", spec.strip())
        name, version = (normalise(match[1]), match[2]) if match else (spec.strip(), "")
        entries.append(Locked(name, version, marker.strip(), hashes, line))
    return entries


def recorded_digest(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX):].split()[0]
    return None


def lock_problems(pyproject: Path, lock: Path) -> list[str]:
    """Each way the lock fails pyproject.toml, in words; [] when they agree. No network."""
    from packaging.requirements import Requirement

    text = lock.read_text()
    problems = []
    recorded, current = recorded_digest(text), pyproject_digest(pyproject)
    if recorded is None:
        problems.append(f"{lock.name} has no '{DIGEST_PREFIX.strip()}' header line: {FIX}")
    elif recorded != current:
        problems.append(f"pyproject.toml's dependencies changed since {lock.name} was generated "
                        f"(digest {current[:12]}, locked {recorded[:12]}): {FIX}")
    for line in text.splitlines():
        if MACHINE_LOCAL.search(line):
            problems.append(f"{lock.name} names something local to one machine ({line.strip()[:70]!r}): {FIX} "
                            "(uv reads no pip.conf; check the UV_* variables)")
    entries = locked_entries(text)
    by_name: dict[str, list[Locked]] = {}
    for entry in entries:
        by_name.setdefault(entry.name, []).append(entry)
        if not entry.version:
            problems.append(f"{lock.name}: {entry.line[:80]!r} is not pinned with ==: {FIX}")
        if not entry.hashes:
            problems.append(f"{lock.name}: {entry.name}=={entry.version} has no --hash: {FIX}")
    wanted = declarations(pyproject)
    for group in ("dependencies", EXTRA, "build-system"):
        for declared in wanted[group]:
            requirement = Requirement(declared)
            name = normalise(requirement.name)
            if name not in by_name:
                problems.append(f"{requirement.name} ({group} in pyproject.toml) is not in {lock.name}: {FIX}")
                continue
            for entry in by_name[name]:
                if not requirement.specifier.contains(entry.version, prereleases=True):
                    problems.append(f"{lock.name} has {requirement.name}=={entry.version}, pyproject.toml ({group}) "
                                    f"asks for {requirement.specifier}: {FIX}")
    if INSTALLER not in by_name:
        problems.append(f"the installer {INSTALLER} is not in {lock.name}: {FIX}")
    return problems


def unsupported_pythons(installed, locked: list[Locked], python: str) -> list[str]:
    """Locked packages installed here whose Requires-Python excludes ``python``: uv ignores the upper bounds
    of Requires-Python when it resolves, so `make lock` can pick such a release (Makefile: LOCK_CONSTRAINTS).
    ``installed``: (name, version, Requires-Python or None) triples."""
    from packaging.specifiers import SpecifierSet

    pins = {(entry.name, entry.version) for entry in locked}
    return [f"{name}=={version} is locked but says Requires-Python {requires}, not {python}: add "
            f"'{normalise(name)}<{version}' to LOCK_CONSTRAINTS in the Makefile and run `make lock`"
            for name, version, requires in installed
            if (normalise(name), version) in pins and requires
            and not SpecifierSet(requires).contains(python, prereleases=True)]



def stamp(lock: Path, pyproject: Path = PYPROJECT) -> None:
    """Put the digest line (and what it covers) after uv's header, replacing an older one."""
    lines = [line for line in lock.read_text().splitlines(keepends=True)
             if not line.startswith(DIGEST_PREFIX) and not line.startswith("# pyproject-digest covers")]
    header = 0
    while header < len(lines) and lines[header].startswith("#"):
        header += 1
    lines[header:header] = ["# pyproject-digest covers [project] dependencies, requires-python, the test extra and "
                            "[build-system] requires; tests/unit/test_lock.py checks it.\n",
                            f"{DIGEST_PREFIX}{pyproject_digest(pyproject)}\n"]
    lock.write_text("".join(lines))


def main(argv: list[str]) -> int:
    command, *paths = argv
    if command == "lock-inputs":
        print("\n".join([*declarations(PYPROJECT)["build-system"], INSTALLER]))
    elif command == "stamp":
        stamp(Path(paths[0]))
    elif command == "installer":
        entries = [e for e in locked_entries(Path(paths[0]).read_text()) if e.name == INSTALLER]
        if len(entries) != 1 or not entries[0].hashes:
            print(f"{paths[0]}: no single hashed {INSTALLER} entry; {FIX}", file=sys.stderr)
            return 1
        print(entries[0].line)
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
