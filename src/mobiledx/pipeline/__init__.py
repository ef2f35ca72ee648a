"""The stage bodies: each DVC stage script in ``stages/`` parses its arguments and calls one function here."""
