"""The validation rules, declared once, and their evaluation in pandas.

A :class:`Rule` is one Great Expectations expectation: its class name, its arguments, a description
and a severity. The validate stage evaluates every rule here first, in milliseconds, before
``great_expectations`` is imported (its import alone takes about 3 s), so that a failure is shown
within a second of the cause. Great Expectations then evaluates the same rules for the record
(``validation.json``), and :func:`mobiledx.preparation.validation.validate_manifest` requires the
two to agree on every rule: its verdict, its unexpected count and its examples.

Only the expectation types the suite uses are evaluated here, with Great Expectations' semantics
for a pandas batch: map expectations skip null values (except ``not_be_null``), examples are the
first offending rows in row order, a column the batch lacks is an error, not a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mobiledx.io import jsonable

MAX_EXAMPLES = 5
MANIFEST_ASSET = "manifest"


@dataclass
class Rule:
    """One expectation of the suite: a Great Expectations class name and its arguments."""

    expectation: str  # e.g. "ExpectColumnValuesToBeBetween"
    kwargs: dict  # column(s), value set, bounds ...
    description: str
    severity: str = "critical"

    @property
    def type(self) -> str:
        """The expectation's type as Great Expectations reports it, e.g. ``expect_column_values_to_be_between``."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.expectation).lower()

    def to_expectation(self, expectations):
        """The Great Expectations object for this rule (``expectations`` is ``gx.expectations``)."""
        return getattr(expectations, self.expectation)(
            **self.kwargs, description=self.description, severity=self.severity
        )


@dataclass
class ExpectationOutcome:
    """The result of one expectation: its verdict, how many rows broke it and some of them."""

    name: str  # e.g. "expect_column_values_to_be_in_set(label)"
    column: str | None
    critical: bool
    success: bool
    unexpected_count: int
    examples: list[dict]  # up to MAX_EXAMPLES offending rows
    detail: str  # short human-readable description of the rule

    @property
    def status(self) -> str:
        """``passed``, ``critical`` (a failed critical expectation) or ``warning``."""
        if self.success:
            return "passed"
        return "critical" if self.critical else "warning"

    @property
    def is_error(self) -> bool:
        """Whether the rule could not be evaluated (e.g. its column is missing): the example says why."""
        return bool(self.examples) and "error" in self.examples[0]


def outcome_name(expectation_type: str, column: str | None, batch: str) -> str:
    """How an outcome is named: ``type(column)`` on the manifest, ``type(batch.column)`` on another
    batch, ``type(batch)`` for a table-level expectation."""
    if column is None:
        return f"{expectation_type}({batch})"
    return f"{expectation_type}({column if batch == MANIFEST_ASSET else f'{batch}.{column}'})"


def evaluate(rule: Rule, frame: pd.DataFrame, batch: str, index_columns: list[str]) -> ExpectationOutcome:
    """Evaluate ``rule`` on ``frame`` (the batch named ``batch``); offending rows are identified by
    ``index_columns`` (their row labels when there are none)."""
    column = rule.kwargs.get("column")
    outcome = ExpectationOutcome(
        name=outcome_name(rule.type, column, batch), column=column, critical=rule.severity == "critical",
        success=True, unexpected_count=0, examples=[], detail=rule.description,
    )
    if rule.expectation == "ExpectTableColumnsToMatchSet":
        return _match_columns(outcome, frame, rule.kwargs["column_set"])
    needed = [rule.kwargs[key] for key in ("column", "column_A", "column_B") if key in rule.kwargs]
    absent = [name for name in needed if name not in frame.columns]
    if absent:
        outcome.success, outcome.examples = False, [{"error": f"column {absent[0]!r} is not in the batch"}]
        return outcome
    if rule.expectation == "ExpectColumnValuesToBeInTypeList" and frame[column].dtype != object:
        outcome.success = frame[column].dtype in [np.dtype(name) for name in rule.kwargs["type_list"]]
        return outcome  # a typed column is checked as a whole: no rows to count
    try:
        rows = frame[_unexpected_rows(rule, frame)]
    except TypeError as error:  # e.g. text compared with a number bound
        outcome.success, outcome.examples = False, [{"error": str(error)}]
        return outcome
    outcome.success = not len(rows)
    outcome.unexpected_count = len(rows)
    shown = rows.head(MAX_EXAMPLES)  # to_dict keeps each column's type (iterrows would make ints floats)
    outcome.examples = [_example(row_label, row, index_columns, rule)
                        for row_label, row in zip(shown.index, shown.to_dict("records"))]
    return outcome


def _unexpected_rows(rule: Rule, frame: pd.DataFrame) -> pd.Series:
    """A boolean mask of the rows that break a map expectation."""
    kwargs = rule.kwargs
    if rule.expectation == "ExpectColumnPairValuesToBeEqual":
        first, second = frame[kwargs["column_A"]], frame[kwargs["column_B"]]
        both_missing = first.isna() & second.isna()
        return ~both_missing & ~(first == second)
    values = frame[kwargs["column"]]
    present = values.notna()
    if rule.expectation == "ExpectColumnValuesToNotBeNull":
        return ~present
    if rule.expectation == "ExpectColumnValuesToBeUnique":
        return present & values.duplicated(keep=False)
    if rule.expectation == "ExpectColumnValuesToBeInSet":
        return present & ~values.isin(kwargs["value_set"])
    if rule.expectation == "ExpectColumnValuesToBeBetween":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        inside = pd.Series(True, index=frame.index)
        if low is not None:
            inside &= values >= low
        if high is not None:
            inside &= values <= high
        return present & ~inside
    if rule.expectation == "ExpectColumnValuesToBeInTypeList":
        types = tuple(np.dtype(name).type for name in kwargs["type_list"])
        return present & ~values.map(lambda value: isinstance(value, types)).astype(bool)
    raise ValueError(f"no pandas evaluation for {rule.expectation}")


def _match_columns(outcome: ExpectationOutcome, frame: pd.DataFrame, column_set: list[str]) -> ExpectationOutcome:
    """The table's columns against ``column_set`` (exact match): each missing, then each unexpected column."""
    present = {str(name) for name in frame.columns}
    outcome.examples = [{"column": name, "problem": "missing"} for name in sorted(set(column_set) - present)]
    outcome.examples += [{"column": name, "problem": "unexpected"} for name in sorted(present - set(column_set))]
    outcome.unexpected_count = len(outcome.examples)
    outcome.success = not outcome.examples
    outcome.examples = outcome.examples[:MAX_EXAMPLES]
    return outcome


def _example(row_label, row: dict, index_columns: list[str], rule: Rule) -> dict:
    """One offending row as Great Expectations lists it: the identifying columns, the tested value last
    (a pair's two values around them)."""
    column = rule.kwargs.get("column")
    if not index_columns:
        return jsonable({"row": row_label, column: row[column]})
    identified = {name: row[name] for name in index_columns if name != column}
    if column is None:  # a column pair
        first, second = rule.kwargs["column_A"], rule.kwargs["column_B"]
        return jsonable({first: row[first]} | identified | {second: row[second]})
    return jsonable(identified | {column: row[column]})
