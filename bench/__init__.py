"""Benchmarks: `python -m bench` (or `wastegate bench`) starts its own Mosquitto and PostgreSQL, runs each
scenario, prints a table and writes bench/results/<name>.json. Figures are compared as ratios taken in
the same run, because this machine's speed drifts from one second to the next."""
