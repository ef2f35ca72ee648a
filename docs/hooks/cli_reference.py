"""MkDocs hook: the command-line reference (docs/reference/cli.md), generated from ``mobiledx.cli.build_parser()``.

The page holds the prose and the marker ``<!-- cli-reference -->``; this hook replaces it with ``mobiledx --help``
and each command's ``--help``, as argparse prints them, so the page cannot disagree with the parser. ``mobiledx.cli``
imports its heavy modules inside the commands; the build stops if importing it starts TensorFlow or MLflow.
"""

from __future__ import annotations

import argparse
import html
import importlib
import os
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError

PAGE = "reference/cli.md"
MARKER = "<!-- cli-reference -->"
WIDTH = "100"  # argparse wraps help at $COLUMNS
HEAVY = ("tensorflow", "keras", "mlflow")


def on_config(config, **kwargs):
    source = str(Path(config.config_file_path).resolve().parent / "src")
    if source not in sys.path:
        sys.path.insert(0, source)  # this checkout's mobiledx, whatever is installed
    return config


def _help(parser: argparse.ArgumentParser) -> str:
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        return parser.format_help().rstrip()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def build() -> str:
    already = {name for name in HEAVY if name in sys.modules}
    cli = importlib.import_module("mobiledx.cli")
    started = sorted({name for name in HEAVY if name in sys.modules} - already)
    if started:
        raise PluginError(f"{PAGE}: importing mobiledx.cli imported {', '.join(started)}; keep those imports inside "
                          "the commands (the docs and `mobiledx --help` should not pay for them)")
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in commands._choices_actions}
    out = ["## `mobiledx`", "", "```text", _help(parser), "```", ""]
    for name, command in commands.choices.items():
        summary = html.escape(helps.get(name) or "", quote=False)
        out += [f"## `mobiledx {name}` {{ #{name} }}", "", summary[:1].upper() + summary[1:] + ".", "",
                "```text", _help(command), "```", ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page, config, files, **kwargs):
    if page.file.src_uri != PAGE:
        return markdown
    if markdown.count(MARKER) != 1:
        raise PluginError(f"{PAGE} must hold the marker {MARKER} exactly once")
    return markdown.replace(MARKER, build())
