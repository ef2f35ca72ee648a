"""The documentation site (mkdocs.yml, docs/) builds strictly, its parameter reference lists every field of
mobiledx.params, and the README stays the front door: short, with links that resolve."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mobiledx import params

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_MAX_LINES = 200
# Dataclasses of mobiledx.params that are not a params.yaml section (docs/hooks/params_reference.py: DERIVED).
DERIVED = {"TrainConfig"}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as `make docs` builds it (strict: any warning fails), into a temporary folder."""
    folder = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    return folder


def _params_dataclasses() -> list[type]:
    return [value for value in vars(params).values()
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == params.__name__]


def test_the_parameter_reference_lists_every_field_of_every_params_dataclass(site):
    page = (site / "reference" / "parameters" / "index.html").read_text(encoding="utf-8")
    listed = set(re.findall(r'data-field="([\w.]+)"', page))
    expected = {f"{cls.__name__}.{field.name}" for cls in _params_dataclasses() if cls.__name__ not in DERIVED
                for field in dataclasses.fields(cls)}
    assert sorted(expected - listed) == []
    assert {"Params.seed", "TrainParams.backbone", "DatasetParams.kind", "LabelPolicy.map"} <= listed


def test_the_derived_train_config_adds_only_top_level_keys():
    """TrainConfig (the train section plus lr and seed) is left off the page: its own fields must be Params'."""
    def names(cls):
        return {field.name for field in dataclasses.fields(cls)}

    assert names(params.TrainConfig) - names(params.TrainParams) <= names(params.Params)


def test_the_parameter_reference_shows_choices_and_defaults_from_the_code(site):
    page = (site / "reference" / "parameters" / "index.html").read_text(encoding="utf-8")
    row = re.search(r'data-field="TrainParams\.backbone".*?</tr>', page, re.DOTALL).group(0)
    assert all(f"<code>{name}</code>" in row for name in params.BACKBONE_NAMES)
    row = re.search(r'data-field="TrainParams\.epochs".*?</tr>', page, re.DOTALL).group(0)
    assert f"<code>{params.TrainParams().epochs}</code>" in row


def test_a_params_field_without_a_description_stops_the_build(monkeypatch):
    spec = importlib.util.spec_from_file_location("params_reference", ROOT / "docs" / "hooks" / "params_reference.py")
    hook = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, hook)  # its dataclasses resolve their annotations there
    spec.loader.exec_module(hook)
    assert hook.build(ROOT)
    described = hook._source_descriptions

    def without_epochs(module):  # as if a new field came without its docstring bullet
        docs, fields = described(module)
        return docs, {name: text for name, text in fields.items() if name != "TrainParams.epochs"}

    monkeypatch.setattr(hook, "_source_descriptions", without_epochs)
    with pytest.raises(Exception, match="TrainParams.epochs has no description"):
        hook.build(ROOT)


def test_the_readme_is_short_and_its_links_resolve():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links into docs/"
    assert [target for target in local if not (ROOT / target).exists()] == []
