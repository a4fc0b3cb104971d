"""The rule lab: what a rule set would have opened on stored history, without touching the case store.

`backtest` replays readings (stored telemetry or a capture) through the same rule engine the gateway runs,
on a clock driven by device time, into an in-memory case book that applies findings as the store does;
`report` summarises, compares two runs (or a run and the store) and writes JSON or CSV; `cases` turns a
real stretch of history into a `rules/tests/` case; `jobs` runs backtests for the API and the console.
"""
