"""repro's Python API for notebooks and scripts: ``from repro import api`` (check, compile, run, report, ls, diff)."""
