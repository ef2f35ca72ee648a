"""MkDocs hook: the layering table of docs/architecture.md, generated from ``mobiledx.codedeps.WING_IMPORTS``.

The page holds the marker ``<!-- layering-table -->``; this hook replaces it with which wing may import which, as
the test that enforces the layering (tests/unit/test_codedeps.py) reads it. It also stops the build when a wing
(sub-package of src/mobiledx) or a root module is not named on the page as `wing/` or `module.py`.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

PAGE = "architecture.md"
MARKER = "<!-- layering-table -->"


def on_config(config, **kwargs):
    source = str(Path(config.config_file_path).resolve().parent / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    return config


def build(markdown: str) -> str:
    codedeps = importlib.import_module("mobiledx.codedeps")
    package = codedeps.PACKAGE_DIR
    wings = sorted(p.name for p in package.iterdir() if (p / "__init__.py").is_file())
    roots = sorted(p.name for p in package.glob("*.py") if p.name != "__init__.py")
    missing = [f"`{w}/`" for w in wings if f"`{w}/`" not in markdown]
    missing += [f"`{m}`" for m in roots if f"`{m}`" not in markdown]
    if missing:
        raise PluginError(f"{PAGE} does not name {', '.join(missing)}: describe it in the package layout")
    # Bottom up: a wing after every wing it may import (ties in WING_IMPORTS' order).
    layers = codedeps.WING_IMPORTS
    order: list[str] = []
    while len(order) < len(layers):
        ready = [w for w in layers if w not in order and layers[w] <= set(order)]
        if not ready:
            raise PluginError(f"{PAGE}: codedeps.WING_IMPORTS has a cycle among {sorted(set(layers) - set(order))}")
        order.append(ready[0])

    def names(group):
        labels = {"core": "core", "tools": "`cli`, `lockfile`"}
        return ", ".join(labels.get(w, f"`{w}/`") for w in sorted(group, key=order.index)) or "nothing in the package"

    core = ", ".join(f"`{m}`" for m in codedeps.CORE)
    rows = ["| wing | may import |", "|---|---|"]
    for wing in order:
        allowed = layers[wing]
        label = {"core": f"core ({core})", "tools": "tools (`cli`, `lockfile`)"}.get(wing, f"`{wing}/`")
        rows.append(f"| {label} | {names(allowed)} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise PluginError(f"{PAGE} must hold the marker {MARKER} exactly once")
    return markdown.replace(MARKER, build(markdown))
