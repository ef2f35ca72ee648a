"""Which package files a stage runs: the transitive closure of its imports inside ``mobiledx``.

DVC re-runs a stage when one of its declared dependencies changes, so every file of ``mobiledx``
that a stage imports, directly or not, at module level or inside a function, must be declared in
``dvc.yaml``. This module derives that set from the source (the AST, nothing is imported or run);
``tests/unit/test_codedeps.py`` checks ``dvc.yaml`` against it, and the training backup key hashes
the same files. Imports under ``if TYPE_CHECKING:`` are not run and do not count.

    python -m mobiledx.codedeps stages/train.py      # the deps lines for dvc.yaml
    python -m mobiledx.codedeps --check [dvc.yaml]   # what dvc.yaml gets wrong (exit 1 if anything)
    python -m mobiledx.codedeps --write [dvc.yaml]   # rewrite every stage's code deps from its imports
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "mobiledx"
PACKAGE_DIR = Path(__file__).resolve().parent
REPOSITORY = PACKAGE_DIR.parents[1]


def _module_file(module: str) -> Path | None:
    """The file of a ``mobiledx`` module or package (``None`` outside the package or if absent)."""
    if module != PACKAGE and not module.startswith(PACKAGE + "."):
        return None
    base = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    relative = path.resolve().relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` runs (each parent package included)."""
    return _imported_modules_from_tree(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), path)


def _imported_modules_from_tree(tree: ast.AST, path: Path) -> set[str]:
    package = _module_name(path) if path.resolve().is_relative_to(PACKAGE_DIR) else ""
    if package and path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # kept only if it is a module
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    expanded = set()
    for module in found:
        parts = module.split(".")
        expanded.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return expanded


def code_closure(script: str | Path) -> list[Path]:
    """The ``mobiledx`` source files ``script`` runs through its imports, sorted (the script not included)."""
    script = Path(script)
    if not script.is_absolute():
        script = REPOSITORY / script
    seen: set[Path] = set()
    pending = [script]
    while pending:
        current = pending.pop()
        for module in _imported_modules(current):
            file = _module_file(module)
            if file is not None and file not in seen:
                seen.add(file)
                pending.append(file)
    return sorted(seen)


def dvc_deps(script: str | Path) -> list[str]:
    """The code deps of a stage for ``dvc.yaml``: the script, then its closure, relative to the repository;
    a folder stands for its files when the closure holds every ``.py`` file below it."""
    files = {path.relative_to(REPOSITORY).as_posix() for path in code_closure(script)}
    folders = sorted({str(Path(f).parent) for f in files}, key=lambda folder: folder.count("/"))
    listed: list[str] = []
    covered: set[str] = set()
    for folder in folders:
        inside = {p.relative_to(REPOSITORY).as_posix() for p in (REPOSITORY / folder).rglob("*.py")}
        if folder != f"src/{PACKAGE}" and inside <= files and not any(folder.startswith(f + "/") for f in listed):
            listed.append(folder)
            covered |= inside
    return [Path(script).as_posix(), *sorted(listed + sorted(files - covered))]


def declared_code(deps: list[str]) -> set[Path]:
    """The ``mobiledx`` source files a stage's ``dvc.yaml`` deps declare (a folder stands for its ``.py`` files)."""
    files: set[Path] = set()
    for dep in deps:
        path = REPOSITORY / dep
        if dep.startswith(f"src/{PACKAGE}"):
            files.update(path.rglob("*.py") if path.is_dir() else [path])
    return {file.resolve() for file in files}


def check_dvc_yaml(path: str | Path = REPOSITORY / "dvc.yaml") -> list[str]:
    """What ``dvc.yaml``'s code deps get wrong: per stage, the package files its script runs but the stage
    does not declare (a change to them would not re-run it), and those declared but never run."""
    import yaml

    problems = []
    for name, stage in yaml.safe_load(Path(path).read_text())["stages"].items():
        body = stage.get("do", stage)
        script = next(part for part in body["cmd"].split() if part.endswith(".py"))
        deps = [dep if isinstance(dep, str) else next(iter(dep)) for dep in body.get("deps", [])]
        needed = {file.resolve() for file in code_closure(script)}
        declared = declared_code(deps)
        relative = lambda files: sorted(f.relative_to(REPOSITORY).as_posix() for f in files)  # noqa: E731
        if script not in deps:
            problems.append(f"{name}: does not list its own script {script}")
        if needed - declared:
            problems.append(f"{name}: runs but does not declare {', '.join(relative(needed - declared))}")
        if declared - needed:
            problems.append(f"{name}: declares but never runs {', '.join(relative(declared - needed))}")
    return problems


def write_dvc_yaml(path: str | Path = REPOSITORY / "dvc.yaml") -> None:
    """Rewrite each stage's code deps in ``dvc.yaml`` to :func:`dvc_deps` of its script (other lines untouched)."""
    import re

    lines = Path(path).read_text().splitlines(keepends=True)
    out: list[str] = []
    script = None
    index = 0
    while index < len(lines):
        line = lines[index]
        command = re.search(r"cmd: python (stages/\S+\.py)", line)
        if command:
            script = command.group(1)
        code = re.match(r"^(\s+)- (stages/|src/mobiledx)", line)
        if code and script:
            while index < len(lines) and re.match(r"^\s+- (stages/|src/mobiledx)", lines[index]):
                index += 1
            out.extend(f"{code.group(1)}- {dep}\n" for dep in dvc_deps(script))
            continue
        out.append(line)
        index += 1
    Path(path).write_text("".join(out))


# The package's wings and which wings each may import: lower layers never reach up, so a wing can be read,
# tested and changed knowing only what is below it. "core" is the root modules any wing may use (they import
# no wing); the root's tools (cli, lockfile) sit on top, with pipeline/.
CORE = ("codedeps", "errors", "io", "params", "paths", "quiet", "tables")
WING_IMPORTS: dict[str, set[str]] = {
    "core": set(),
    "tracking": {"core", "evaluation"},  # the headline metric set (evaluation.headline) names what runs log
    "data": {"core"},
    "models": {"core", "data"},
    "preparation": {"core", "data", "models"},
    "training": {"core", "data", "models", "preparation", "tracking"},
    "evaluation": {"core", "data", "models"},
    "tflite": {"core", "data", "evaluation"},
    "release": {"core", "data", "evaluation", "tflite", "tracking"},
    "pipeline": {"core", "data", "models", "preparation", "training", "evaluation", "tflite", "tracking",
                 "release"},
    "tools": {"core", "data", "models", "preparation", "training", "evaluation", "tflite", "tracking", "release",
              "pipeline"},
}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, imports inside functions included: a function-level
    import hides an edge from Python at import time, not from the design."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        module = _module_name(path)
        # A module's own parent packages are already being imported when it runs: not an edge.
        ancestors = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
        imported = _imported_modules_from_tree(ast.parse(path.read_text(encoding="utf-8")), path)
        graph[module] = {target for name in imported if (f := _module_file(name)) is not None
                         and (target := _module_name(f)) != module and target not in ancestors}
    return graph


def wing_of(module: str) -> str:
    """The wing of a package module: its sub-package, ``core`` or ``tools`` for a root module."""
    parts = module.split(".")
    if len(parts) == 1:
        return "core"  # the package's own __init__
    if len(parts) > 2 or (PACKAGE_DIR / parts[1]).is_dir():
        return parts[1]
    return "core" if parts[1] in CORE else "tools"


def layer_violations() -> list[str]:
    """Imports that cross the layering of :data:`WING_IMPORTS` (``a -> b`` for each), and wings it omits."""
    problems = []
    for module, targets in sorted(import_graph().items()):
        wing = wing_of(module)
        if wing not in WING_IMPORTS:
            problems.append(f"{module}: wing {wing!r} has no entry in codedeps.WING_IMPORTS")
            continue
        problems.extend(f"{module} -> {target} ({wing} may not import {wing_of(target)})" for target in sorted(targets)
                        if wing_of(target) != wing and wing_of(target) not in WING_IMPORTS[wing])
    return problems


def import_cycles() -> list[list[str]]:
    """Cycles among the package's imports (each as the list of modules around it), the imports inside
    functions included."""
    graph = import_graph()
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def main(argv: list[str] | None = None) -> None:
    arguments = argv if argv is not None else sys.argv[1:]
    if arguments[:1] == ["--write"]:
        write_dvc_yaml(*arguments[1:2])
        arguments = ["--check", *arguments[1:2]]
    if arguments[:1] == ["--check"]:
        problems = check_dvc_yaml(*arguments[1:2])
        print("\n".join(problems) or "dvc.yaml declares exactly the code each stage runs")
        raise SystemExit(1 if problems else 0)
    for script in arguments:
        print(f"{script}:")
        for dep in dvc_deps(script):
            print(f"  - {dep}")


if __name__ == "__main__":
    main()
