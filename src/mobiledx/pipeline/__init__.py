"""The stage bodies: each DVC stage script in ``stages/`` parses its arguments and calls one function here.

:func:`run_stage` is that wiring: ``python stages/<verb>.py [DATASET] [--params params.yaml]``. A
:class:`mobiledx.errors.MobiledxError` (bad data, bad params, a missing resource) is printed as one
``mobiledx: error: ...`` line naming the fix, with exit status 1; anything else is a bug and keeps
its traceback. Known noise from the native runtimes is filtered out (:mod:`mobiledx.quiet`; set
``MOBILEDX_VERBOSE=1`` to see everything). The stage sees only the params keys its entry in
``dvc.yaml`` declares (:meth:`mobiledx.params.Params.declared`): reading another one fails at once,
instead of leaving outputs that DVC will not rebuild when that key changes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mobiledx.errors import MobiledxError, show
from mobiledx.params import PARAMS_FILE, Params, load_params
from mobiledx.quiet import filter_native_output


def run_stage(stage: Callable, description: str, with_dataset: bool = True, argv: list[str] | None = None,
              stage_name: str | None = None, recipe: bool = True) -> None:
    """Parse ``[DATASET] [--params FILE]``, load the params, call ``stage(dataset, params)`` (or ``stage(params)``).

    ``stage_name``: the stage's name in dvc.yaml, whose declared params the stage sees (default: the name of
    the module defining ``stage``); e.g. ``ingest_external`` runs ingest's body on ``external_datasets``.
    ``recipe=False``: the argument names something other than a dataset (an ``external:`` entry), so no
    dataset's own recipe is applied."""
    parser = argparse.ArgumentParser(description=description)
    if with_dataset:
        parser.add_argument("dataset", help="dataset name registered under 'datasets:' in params.yaml")
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    filter_native_output()
    try:
        params: Params = load_params(args.params)
        name = stage_name or stage.__module__.rsplit(".", 1)[-1]  # mobiledx.pipeline.<stage name in dvc.yaml>
        if with_dataset and recipe:
            params = params.for_dataset(args.dataset)
        declared = declared_params(name)
        if declared is not None:
            params = params.declared(declared, name)
        if with_dataset:
            stage(args.dataset, params)
        else:
            stage(params)
    except MobiledxError as error:
        if not error.shown:
            show(error)
        sys.exit(1)


def declared_params(stage: str, dvc_yaml: str | Path = "dvc.yaml") -> list[str] | None:
    """The ``params.yaml`` keys stage ``stage`` declares in ``dvc_yaml`` (None: no such file or stage)."""
    import yaml

    path = Path(dvc_yaml)
    if not path.is_file():
        return None
    entry = (yaml.safe_load(path.read_text(encoding="utf-8")).get("stages") or {}).get(stage)
    if entry is None:
        return None
    keys = []
    for item in entry.get("do", entry).get("params", []):
        if isinstance(item, str):
            keys.append(item.replace("${key}", "").rstrip("."))
        elif isinstance(item, dict):
            keys += [key for file, listed in item.items() if Path(file).name == "params.yaml" for key in listed]
    return keys
