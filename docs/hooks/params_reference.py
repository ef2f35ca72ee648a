"""MkDocs hook: the parameter reference (docs/reference/parameters.md), generated from ``mobiledx.params``.

The page holds the prose and the marker ``<!-- params-reference -->``; at build time this hook replaces the
marker with one table per ``params.yaml`` section, read from the frozen dataclasses of ``mobiledx.params``
(imported alone: no TensorFlow), so the page cannot disagree with the code:

- key, type and default: ``dataclasses.fields`` and the type hints;
- choices: asked of the loader itself. Each text key is set to an impossible value and parsed; the
  ``must be one of (...)`` that ``parse_params`` answers is the list, so it is exactly what the code accepts.
  The dataset kinds are the ``@register("<kind>")`` adapters under ``mobiledx/data/adapters/`` (read, not
  imported), each linked to its page under ``sources/``;
- required keys of a ``datasets:`` or ``external:`` entry: those whose absence ``parse_params`` refuses;
- "declared by": the ``dvc.yaml`` stages whose ``params:`` list the key or its section;
- description: a bullet or paragraph of the class docstring that starts with ````field````: , else the comment
  at the end of the field's line in params.py.

The build stops (``PluginError``) on a field with no description and on a dataclass of ``mobiledx.params`` that
the page does not cover.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import io
import re
import sys
import tokenize
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from mkdocs.exceptions import PluginError

PAGE = "reference/parameters.md"
MARKER = "<!-- params-reference -->"
# Dataclasses of mobiledx.params that are not a params.yaml section: the train section plus the shared lr and
# seed (Params.train_config()), documented under train and the top level.
DERIVED = {"TrainConfig"}
# A valid entry of each mapping of entries; the hook drops each key in turn to learn which ones are required.
MINIMAL_ENTRIES = {
    "datasets": {"kind": "folder", "path": "data/raw/x"},
    "external": {"model": "x", "data": "x", "labels": {"a": "b"}},
}
# Fields whose value is not a key of their own: the entry's name is its key in the mapping, and ``recipe`` is
# the sections (ingest, ..., export) written inside the entry.
ENTRY_NAME = "name"
ENTRY_RECIPE = "recipe"

@dataclasses.dataclass
class Section:
    cls: type
    anchor: str  # the heading's id
    title: str  # how keys are written: "train", "datasets.<name>", "" for the top level
    collection: str | None = None  # "datasets" / "external" for the entries of a mapping
    rows: list[Row] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Row:
    field: dataclasses.Field
    key: str  # markdown of the key cell
    anchor: str | None
    type: str
    default: str
    choices: str
    declared_by: str
    description: str


# ---------------------------------------------------------------------------------------------- reading the source
def _rst(text: str) -> str:
    """Docstring markup as Markdown: ``x`` -> `x`, :class:`X` -> `X`, and a blank line after a bullet list that a
    plain line follows (Markdown would fold that line into the last bullet)."""
    text = re.sub(r":(?:class|mod|meth|func|data|attr):`~?([^`]+)`", r"`\1`", text)
    text = re.sub(r"``(.+?)``", r"`\1`", text, flags=re.DOTALL)
    lines, in_list = [], False
    for line in _no_tags(text).splitlines():
        if line.startswith("- "):
            in_list = True
        elif in_list and line and not line.startswith(" "):
            lines.append("")
            in_list = False
        elif not line:
            in_list = False
        lines.append(line)
    return "\n".join(lines)


def _line_comments(source: str) -> dict[int, str]:
    """Line number -> the comment that ends that line."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def _docstring_entries(doc: str) -> dict[str, str]:
    """Field -> text, for the bullets and paragraphs of a docstring that start with ````field````: (or
    ````a```` / ````b````: for two fields). A bullet runs on over its indented lines, a paragraph to a blank line."""
    entries: dict[str, str] = {}
    start = re.compile(r"^(- )?((?:``\w+``(?: / )?)+):\s*(.*)$")
    names: list[str] = []
    lines: list[str] = []
    bullet = False
    for line in [*doc.splitlines(), ""]:
        stripped = line.strip()
        match = start.match(stripped)
        continues = stripped and not match and (line.startswith(" ") if bullet else not stripped.startswith("- "))
        if names and continues:
            lines.append(stripped)
            continue
        for name in names:
            entries[name] = " ".join(lines)
        names, lines, bullet = [], [], False
        if match:
            names, lines, bullet = re.findall(r"``(\w+)``", match.group(2)), [match.group(3)], bool(match.group(1))
    return entries


def _source_descriptions(module) -> tuple[dict[str, str], dict[str, str]]:
    """(class -> its docstring, "Class.field" -> its description) from the source of ``module``."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    comments = _line_comments(source)
    docs, fields = {}, {}
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef):
            continue
        doc = ast.get_docstring(node) or ""
        docs[node.name] = doc
        from_doc = _docstring_entries(doc)
        for statement in node.body:
            if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                name = statement.target.id
                text = from_doc.get(name) or comments.get(statement.end_lineno, "")
                if text:
                    fields[f"{node.name}.{name}"] = _rst(text)
    return docs, fields


def _adapter_kinds(package_dir: Path) -> dict[str, bool]:
    """Kind -> whether it applies a label policy, from the ``@register(...)`` decorators of the adapters."""
    kinds = {}
    adapters = package_dir / "data" / "adapters"
    if not adapters.is_dir():
        raise PluginError(f"{PAGE}: no adapters folder at {adapters}; update docs/hooks/params_reference.py")
    for path in sorted(adapters.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                for decorator in node.decorator_list:
                    if (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "register"
                            and decorator.args and isinstance(decorator.args[0], ast.Constant)):
                        label_policy = any(k.arg == "label_policy" and getattr(k.value, "value", False)
                                           for k in decorator.keywords)
                        kinds[decorator.args[0].value] = label_policy
    if not kinds:
        raise PluginError(f"{PAGE}: found no @register(\"<kind>\") adapter under {adapters}")
    return kinds


def _declarations(root: Path) -> list[tuple[str, list[str]]]:
    """(stage, its params: entries with ``${key}`` written ``<name>``) in dvc.yaml's order."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    return [(name, [str(p).replace("${key}", "<name>") for p in (body.get("do", body).get("params") or [])])
            for name, body in stages.items()]


# ------------------------------------------------------------------------------------------ asking the loader
def _raw(collection: str | None, title: str, key: str, value: Any) -> dict:
    """A params.yaml mapping that sets ``key`` of the section ``title`` to ``value``."""
    if collection is None:
        return {title: {key: value}} if title else {key: value}
    entry = dict(MINIMAL_ENTRIES[collection])
    raw: dict[str, Any] = {"datasets": {"x": dict(MINIMAL_ENTRIES["datasets"])}}
    if title.endswith(".labels"):
        entry["labels"] = {key: value}
    else:
        entry[key] = value
    raw.setdefault(collection, {})["x"] = entry
    return raw


def _choices(params, section: Section, key: str) -> tuple[str, ...] | None:
    try:
        params.parse_params(_raw(section.collection, section.title, key, "\x00"))
    except params.ParamsError as error:
        where = re.escape(f"{section.title.replace('<name>', 'x')}.{key}".lstrip("."))
        match = re.search(where + r" must be one of (\(.*?\)), got", str(error))
        if match:
            return ast.literal_eval(match.group(1))
    return None


def _required(params, collection: str) -> set[str]:
    minimal = MINIMAL_ENTRIES[collection]

    def parse(entry):
        raw = {"datasets": {"x": dict(MINIMAL_ENTRIES["datasets"])}}
        raw[collection] = {"x": entry}
        params.parse_params(raw)

    try:
        parse(minimal)
    except params.ParamsError as error:
        raise PluginError(f"{PAGE}: the hook's minimal {collection} entry {minimal} no longer parses ({error}); "
                          "update MINIMAL_ENTRIES in docs/hooks/params_reference.py") from None
    required = set()
    for key in minimal:
        try:
            parse({k: v for k, v in minimal.items() if k != key})
        except params.ParamsError:
            required.add(key)
    return required


# ------------------------------------------------------------------------------------------------- rendering
def _type(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(arg) for arg in typing.get_args(hint))
    if origin is dict:
        key, value = typing.get_args(hint)
        return f"mapping: {_type(key)} → {_type(value)}"
    if dataclasses.is_dataclass(hint):
        return "mapping"
    return {int: "integer", float: "number", bool: "true/false", str: "text", Path: "path", type(None): "null",
            Any: "any"}.get(hint, getattr(hint, "__name__", str(hint)))


def _yaml(value: Any) -> str:
    if value == "":
        return '""'
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _cell(text: str) -> str:
    """Text safe in a table cell: one line, pipes escaped outside code spans (inside them Markdown keeps them)."""
    return _outside_code(" ".join(text.split()), lambda part: part.replace("|", "\\|"))


def _outside_code(text: str, change) -> str:
    """``text`` with ``change`` applied to what lies outside its code spans."""
    parts = text.split("`")
    return "`".join(part if i % 2 else change(part) for i, part in enumerate(parts))


def _no_tags(text: str) -> str:
    """A ``<`` outside code would open an HTML tag (``<name>`` would vanish): write it as ``&lt;``."""
    return _outside_code(text, lambda part: part.replace("<", "&lt;"))


def _sentence(text: str) -> str:
    return text if text.endswith((".", ")", "?", "!")) else text + "."


def _code(text: str) -> str:
    return f"`{text}`"


def _stage_list(declarations, key: str) -> str:
    stages = [stage for stage, declared in declarations
              if any(key == d or key.startswith(d + ".") for d in declared)]
    return ", ".join(stages)


def _sections(params) -> list[Section]:
    """The page's sections in params.yaml's order: the top level, then each section and mapping of entries."""
    sections = [Section(params.Params, "top-level", "")]
    for field in dataclasses.fields(params.Params):
        hint = typing.get_type_hints(params.Params)[field.name]
        if dataclasses.is_dataclass(hint):
            sections.append(Section(hint, field.name, field.name))
        elif typing.get_origin(hint) is dict:
            entry = typing.get_args(hint)[1]
            if dataclasses.is_dataclass(entry) and all(s.cls is not entry for s in sections):
                sections.append(Section(entry, field.name, f"{field.name}.<name>", collection=field.name))
                for inner in dataclasses.fields(entry):
                    inner_hint = typing.get_type_hints(entry)[inner.name]
                    if dataclasses.is_dataclass(inner_hint):
                        sections.append(Section(inner_hint, f"{field.name}-{inner.name}",
                                                f"{field.name}.<name>.{inner.name}", collection=field.name))
    return sections


def _pointer(sections: list[Section], hint: Any) -> Section | None:
    target = typing.get_args(hint)[1] if typing.get_origin(hint) is dict else hint
    return next((s for s in sections if s.cls is target), None)


def build(root: Path) -> str:
    """The generated Markdown."""
    params = importlib.import_module("mobiledx.params")
    docs, described = _source_descriptions(params)
    kinds = _adapter_kinds(Path(params.__file__).parent)
    declarations = _declarations(root)
    sections = _sections(params)
    problems = []

    covered = {s.cls.__name__ for s in sections} | DERIVED
    module_classes = {name for name, obj in vars(params).items()
                      if dataclasses.is_dataclass(obj) and obj.__module__ == params.__name__}
    problems += [f"dataclass {name} is not reachable from Params: add it to the page (or to DERIVED)"
                 for name in sorted(module_classes - covered)]

    required = {c: _required(params, c) for c in MINIMAL_ENTRIES}
    out = []
    for section in sections:
        cls = section.cls
        hints = typing.get_type_hints(cls)
        heading = f"`{section.title}`" if section.title else "Top level"
        out += [f"## {heading} {{ #{section.anchor} }}", "",
                f"*`mobiledx.params.{cls.__name__}`*" + (f", declared in `dvc.yaml` as `{section.title}` by "
                                                         f"{_stage_list(declarations, section.title)}"
                                                         if section.collection else ""), ""]
        if section.collection == "datasets" and not section.title.endswith(".labels"):
            out += ["`external_datasets.<name>` entries take the same keys; they are declared by "
                    f"{_stage_list(declarations, 'external_datasets.<name>')}.", ""]
        if section.title.endswith(".labels"):
            applying = ", ".join(_code(k) for k, policy in sorted(kinds.items()) if policy)
            out += [f"Applied by the kinds {applying}; ingest refuses `labels` on the others.", ""]
        if docs.get(cls.__name__):
            out += [_rst(docs[cls.__name__]), ""]
        out += ["| key | default | description |", "|---|---|---|"]
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            qualified = f"{section.title}.{field.name}".lstrip(".")
            pointer = _pointer(sections, hint) if section.anchor == "top-level" or dataclasses.is_dataclass(hint) \
                else None
            anchor = None if pointer else qualified.replace("<name>.", "").replace(".<name>", "")
            key = _code(qualified)
            if section.collection and field.name == ENTRY_NAME:
                key, anchor = _code(section.title), f"{section.anchor}.{ENTRY_NAME}"
            elif section.collection and field.name == ENTRY_RECIPE:
                key = _code(f"{section.title}.{{{', '.join(params.RECIPE_SECTIONS)}}}")
            if field.default is not dataclasses.MISSING:
                default = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            else:
                default = dataclasses.MISSING
            if section.collection and field.name in required.get(section.collection, ()):
                default_text = "required"
            elif default is dataclasses.MISSING:
                default_text = "(the entry's key)" if field.name == ENTRY_NAME else "required"
            elif dataclasses.is_dataclass(default):
                default_text = "its section's defaults"
            else:
                default_text = _code(_yaml(default))
            choices = ""
            if field.name == "kind" and section.collection == "datasets":
                choices = ", ".join(f"[`{k}`](../sources/{k}.md)" for k in sorted(kinds))
            elif hint is str:
                found = _choices(params, section, field.name)
                choices = ", ".join(_code(c) for c in found) if found else ""
            name = f"{cls.__name__}.{field.name}"
            description = described.get(name, "")
            if pointer is not None:
                # An entry's docstring opens with what the entry is; a section's may open with one of its keys.
                summary = _rst(docs.get(pointer.cls.__name__, "").split("\n\n")[0])
                if summary.startswith("`") or description:
                    summary = ""
                link = f"[`{pointer.title}`](#{pointer.anchor})"
                description = " ".join(_sentence(part) for part in (description or summary, f"See {link}.") if part)
            if not description:
                problems.append(f"{name} has no description: add a ``{field.name}``: bullet to its class's docstring "
                                f"in params.py")
            where = qualified if not section.collection else section.title
            declared = "" if pointer is not None else _stage_list(declarations, where)
            html_anchor = f'<a id="{anchor}"></a>' if anchor else ""
            marker = f'<span data-field="{name}"></span>'
            section.rows.append(Row(field, html_anchor + marker + key, anchor, _cell(_type(hint)),
                                    _cell(default_text), _cell(choices), _cell(declared),
                                    _cell(_no_tags(description))))
        for r in section.rows:
            notes = [r.description]
            if r.choices:
                notes.append(f"**One of:** {r.choices}.")
            if r.declared_by:
                notes.append(f"**Declared by:** {r.declared_by}.")
            out.append(f"| {r.key}<br>*{r.type}* | {r.default} | {'<br>'.join(notes)} |")
        out.append("")
    if problems:
        raise PluginError(f"{PAGE} (docs/hooks/params_reference.py):\n  " + "\n  ".join(problems))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------ MkDocs events
_ROOT: Path | None = None


def on_config(config, **kwargs):
    global _ROOT
    _ROOT = Path(config.config_file_path).resolve().parent
    source = str(_ROOT / "src")
    if source not in sys.path:
        sys.path.insert(0, source)  # this checkout's mobiledx, whatever is installed
    return config


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise PluginError(f"{PAGE} must hold the marker {MARKER} exactly once")
    return markdown.replace(MARKER, build(_ROOT))
