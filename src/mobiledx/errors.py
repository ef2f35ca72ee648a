"""Errors a user can fix: shown as one line with the fix, never as a traceback."""

from __future__ import annotations

import sys


class MobiledxError(Exception):
    """An expected problem with the user's data, settings or environment; the message names the fix.

    Stage scripts and the ``mobiledx`` CLI print it as ``mobiledx: error: <message>`` and exit with
    status 1 (stages) or 2 (CLI). Anything else is a bug and keeps its traceback.
    """

    shown = False  # set by show(): already printed, so raising it only ends the stage with status 1


def show(error: MobiledxError) -> None:
    """Print ``error`` now, as a stage prints it when it ends (``mobiledx: error: ...`` on stderr), for a
    stage that has work left before it can end (writing a report); raising it later prints nothing more."""
    print(f"mobiledx: error: {error}", file=sys.stderr, flush=True)
    error.shown = True
