"""Measure how much each planted fault hurts, with no tool attached.

For every case in cases.toml (or those named on the command line) run
``python SCRIPT --max-steps 200 --seed 0 ARGS``, parse its final
``DEV_METRIC <name>=<value> pred_std=<value>`` line, and store
name -> {metric, pred_std, seconds, returncode} in harm.json, written after
each case. Cases already in harm.json are skipped unless --force. Finally a
markdown table compares each faulty case with its healthy twin.

Usage:  python bench/faults/harm.py [--force] [--table-only] [NAME ...]
"""
from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "cases.toml"
RESULTS = HERE / "harm.json"
LOGS = HERE / "runs" / "harm"
LINE = re.compile(r"^DEV_METRIC (\w+)=(\S+) pred_std=(\S+)\s*$", re.M)


def load_cases() -> dict:
    with open(MANIFEST, "rb") as fh:
        return tomllib.load(fh)["cases"]


def _num(text: str):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def run_case(name: str, case: dict, max_steps: int, seed: int, timeout: int) -> dict:
    cmd = [sys.executable, str(HERE / case["script"]), "--max-steps", str(max_steps),
           "--seed", str(seed), *case.get("args", [])]
    LOGS.mkdir(parents=True, exist_ok=True)
    start = time.time()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
        out, err, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        rc = "timeout"
    seconds = round(time.time() - start, 1)
    (LOGS / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n{out}\n--- stderr ---\n{err}")
    found = LINE.findall(out)
    metric_name, metric, pred_std = (found[-1][0], _num(found[-1][1]), _num(found[-1][2])) if found else (None, None, None)
    return {"metric_name": metric_name, "metric": metric, "pred_std": pred_std,
            "seconds": seconds, "returncode": rc}


def harmed(res: dict, twin: dict | None) -> str:
    if res.get("metric") is None:
        if res.get("returncode") != 0:
            return "yes (crash)"
        return "yes (nan metric)" if res.get("metric_name") else "yes (no metric line)"
    if not twin or twin.get("metric") is None:
        return "?"
    drop = twin["metric"] - res["metric"]
    std_ratio = (res["pred_std"] or 0.0) / twin["pred_std"] if twin.get("pred_std") else 1.0
    if drop > 0.1 or std_ratio < 0.5:
        return "yes"
    return "NO"


def fmt(x, nd=3):
    return "null" if x is None else f"{x:.{nd}f}"


def table(cases: dict, results: dict) -> str:
    lines = ["| case | cause | twin | metric | twin metric | delta | pred_std | twin pred_std | s | harmed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    healthy = [n for n, c in cases.items() if not c["cause"]]
    for name in healthy:
        r = results.get(name)
        if r:
            lines.append(f"| {name} | (healthy) | | {fmt(r['metric'])} | | | {fmt(r['pred_std'])} | | {r['seconds']:.0f} | |")
    for name, case in cases.items():
        if not case["cause"] or name not in results:
            continue
        r = results[name]
        t = results.get(case.get("twin", ""))
        delta = (r["metric"] - t["metric"]) if (t and r["metric"] is not None and t["metric"] is not None) else None
        lines.append(
            f"| {name} | {case['cause']} | {case.get('twin', '')} | {fmt(r['metric'])} | "
            f"{fmt(t['metric']) if t else 'n/a'} | {fmt(delta)} | {fmt(r['pred_std'])} | "
            f"{fmt(t['pred_std']) if t else 'n/a'} | {r['seconds']:.0f} | {harmed(r, t)} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="cases to run (default: all)")
    ap.add_argument("--force", action="store_true", help="rerun cases already in harm.json")
    ap.add_argument("--table-only", action="store_true", help="only print the table")
    ap.add_argument("--max-steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per case")
    args = ap.parse_args()

    cases = load_cases()
    unknown = [n for n in args.names if n not in cases]
    if unknown:
        sys.exit(f"unknown cases: {', '.join(unknown)}")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}

    if not args.table_only:
        todo = args.names or list(cases)
        t0 = time.time()
        for i, name in enumerate(todo, 1):
            if name in results and not args.force:
                print(f"[{i}/{len(todo)}] {name}: cached", flush=True)
                continue
            print(f"[{i}/{len(todo)}] {name} ...", end=" ", flush=True)
            res = run_case(name, cases[name], args.max_steps, args.seed, args.timeout)
            results[name] = res
            RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
            print(f"{res['metric_name']}={fmt(res['metric'])} pred_std={fmt(res['pred_std'])} "
                  f"rc={res['returncode']} {res['seconds']:.0f}s", flush=True)
        print(f"total {time.time() - t0:.0f}s", flush=True)

    print(table(cases, results))


if __name__ == "__main__":
    main()
