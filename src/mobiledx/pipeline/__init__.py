"""The stage bodies: each DVC stage script in ``stages/`` parses its arguments and calls one function here.

:func:`run_stage` is that wiring: ``python stages/<verb>.py [DATASET] [--params params.yaml]``. A
:class:`mobiledx.errors.MobiledxError` (bad data, bad params, a missing resource) is printed as one
``mobiledx: error: ...`` line naming the fix, with exit status 1; anything else is a bug and keeps
its traceback. Known noise from the native runtimes is filtered out (:mod:`mobiledx.quiet`; set
``MOBILEDX_VERBOSE=1`` to see everything).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mobiledx.errors import MobiledxError
from mobiledx.params import PARAMS_FILE, Params, load_params
from mobiledx.quiet import filter_native_output


def run_stage(stage: Callable, description: str, with_dataset: bool = True, argv: list[str] | None = None) -> None:
    """Parse ``[DATASET] [--params FILE]``, load the params, call ``stage(dataset, params)`` (or ``stage(params)``)."""
    parser = argparse.ArgumentParser(description=description)
    if with_dataset:
        parser.add_argument("dataset", help="dataset name registered under 'datasets:' in params.yaml")
    parser.add_argument("--params", default=PARAMS_FILE, help="params file (default: %(default)s)")
    args = parser.parse_args(argv)
    filter_native_output()
    try:
        params: Params = load_params(args.params)
        if with_dataset:
            stage(args.dataset, params.for_dataset(args.dataset))
        else:
            stage(params)
    except MobiledxError as error:
        print(f"mobiledx: error: {error}", file=sys.stderr)
        sys.exit(1)
