"""Errors a user can fix: shown as one line with the fix, never as a traceback."""

from __future__ import annotations


class MobiledxError(Exception):
    """An expected problem with the user's data, settings or environment; the message names the fix.

    Stage scripts and the ``mobiledx`` CLI print it as ``mobiledx: error: <message>`` and exit with
    status 1 (stages) or 2 (CLI). Anything else is a bug and keeps its traceback.
    """
