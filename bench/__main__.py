"""`python -m bench`: run every benchmark, write bench/results.json, print the table."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

from bench.report import Row, table

SUITES = [
    "bench.ledger_bench",
    "bench.tap_bench",
    "bench.sync_bench",
    "bench.nfc_bench",
    "bench.sim_bench",
    "bench.report_bench",
]


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    rows: list[Row] = []
    for name in SUITES:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(importlib.import_module(name).run())
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(rows, indent=2) + "\n")
    print(table(rows))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
