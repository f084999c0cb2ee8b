#!/usr/bin/env python3
"""Checks `kdsr sweep plan`'s cost estimates against the runs that finished after it.

Usage: scripts/estimate_error.py PLAN.txt RUNS_DIR

PLAN.txt is the saved output of `kdsr sweep plan <grid>`; RUNS_DIR the grid's records folder.
For every run the plan estimated (`~` in its core-h column) that now has a record, prints the
estimate, the recorded cost (total_seconds x threads, the earlier processes of a resumed run
included) and the ratio, as a Markdown table, then the median and the total ratio.
"""
import json
import statistics
import sys
from pathlib import Path


def main() -> None:
    plan, runs = Path(sys.argv[1]), Path(sys.argv[2])
    rows = []
    for line in plan.read_text().splitlines():
        words = line.split()
        if len(words) < 4 or words[-2] != "~" or not words[-1].startswith(("beauty-", "sports-", "toys-", "clothing-", "ml-")):
            continue
        run_id, estimate = words[-1], float(words[-3])
        record = runs / run_id / "metrics.json"
        if not record.is_file():
            continue
        r = json.loads(record.read_text())
        actual = r["total_seconds"] * r["threads"] / 3600.0
        rows.append((run_id, r["protocol"], r["variant"], r["seed"], r["epochs_run"], estimate, actual))
    print("| run | protocol | variant | seed | epochs | estimated core-h | recorded core-h | recorded / estimated |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for run_id, protocol, variant, seed, epochs, est, act in rows:
        print(f"| {run_id} | {protocol} | {variant} | {seed} | {epochs} | {est:.2f} | {act:.2f} | {act / est:.2f} |")
    if rows:
        ratios = [act / est for *_, est, act in rows]
        total_est, total_act = sum(r[5] for r in rows), sum(r[6] for r in rows)
        print(f"\n{len(rows)} runs: median ratio {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}-{max(ratios):.2f}); total {total_act:.2f} recorded core-h "
              f"against {total_est:.2f} estimated (ratio {total_act / total_est:.2f}).")


if __name__ == "__main__":
    main()
