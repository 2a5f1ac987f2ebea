"""Throughput and memory of ``defib check`` against bare batched fast-tokenizer encoding, on the same rows.

Rows: 1M short texts stitched from STS-B sentences (the first half of one
sentence's words + the second half of another's, so that nearly every row is
distinct), with a score in 0..5 as the label, written once to a CSV.

In one run, on one machine, each in a fresh process:
1. bare: the packaged MiniLM tokenizer, ``tokenizer(batch, truncation=True,
   max_length=128)`` over the rows in batches of 4,096, rows already in memory;
2. ``defib.check_file`` on the CSV (read, parse, tokenize, every statistic and rule);
3. the same at 1/10 of the rows, to show that peak memory does not grow with the rows;
4. ``defib check`` on the real STS-B (pairs) and Rotten Tomatoes files, to
   report what it finds on real data.

Peak memory is the process's maximum resident set (``ru_maxrss``), imports and
model files included.

    python bench/preflight/run.py             # 1M rows (about 2 minutes on 2 cores)
    python bench/preflight/run.py --rows 100000

The table is printed and written to bench/preflight/README.md.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import argparse
import csv
import datetime as dt
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAX_LENGTH = 128
BATCH = 4096

BARE = """
import json, resource, sys, time, csv
from transformers import AutoTokenizer
from defib.demos.data import model_path
rows = [r[0] for r in csv.reader(open(sys.argv[1], encoding="utf-8"))][1:]
tok = AutoTokenizer.from_pretrained(model_path(), use_fast=True)
t0 = time.perf_counter()
for i in range(0, len(rows), {batch}):
    tok(rows[i:i + {batch}], truncation=True, max_length={max_length})
secs = time.perf_counter() - t0
print(json.dumps({{"rows": len(rows), "seconds": secs,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

CHECK = """
import json, resource, sys, time
import defib
from transformers import AutoConfig, AutoTokenizer  # imported before the clock starts, as in the bare run
from defib.demos.data import model_path
t0 = time.perf_counter()
d = defib.check_file(sys.argv[1], text=sys.argv[2], text_pair=sys.argv[3] or None, label=sys.argv[4],
                     model=model_path(), max_length=int(sys.argv[5]) if sys.argv[5] else None)
secs = time.perf_counter() - t0
print(json.dumps({"rows": d.extra["check"]["rows"], "seconds": secs, "verdict": d.verdict,
                  "findings": [[f.code, str(f.severity), f.message] for f in d.findings],
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sentences() -> list[tuple[list[str], float]]:
    from defib.demos.data import load_stsb

    out = []
    for split in ("train", "dev", "test"):
        s = load_stsb(split)
        out += [(a.split(), y) for a, y in zip(s.sentence1, s.score)]
        out += [(b.split(), y) for b, y in zip(s.sentence2, s.score)]
    return out


def synthesise(path: Path, n: int, seed: int = 0) -> None:
    """``n`` rows: half of one STS-B sentence + half of another, and a score in 0..5."""
    rng = random.Random(seed)
    pool = sentences()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "score"])
        for _ in range(n):
            (a, ya), (b, yb) = rng.choice(pool), rng.choice(pool)
            w.writerow([" ".join(a[:len(a) // 2 + 1] + b[len(b) // 2:]), round((ya + yb) / 2, 2)])


def run(code: str, *args: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-2000:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - t0
    return out


def real_files(folder: Path) -> dict[str, tuple[str, ...]]:
    """STS-B train as a TSV of pairs, Rotten Tomatoes as Parquet with text labels."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, load_stsb

    stsb = {}
    for split in ("train", "dev"):
        s = load_stsb(split)
        stsb[split] = folder / f"stsb-{split}.tsv"
        with open(stsb[split], "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t")
            w.writerow(["sentence1", "sentence2", "score"])
            w.writerows(zip(s.sentence1, s.sentence2, s.score))
    rt = load_rotten_tomatoes()
    rtp = folder / "rotten_tomatoes.parquet"
    pq.write_table(pa.table({"text": rt.text, "label": [RT_CLASSES[i] for i in rt.label]}), rtp)
    return {"STS-B train (pairs, max_length 128)": (str(stsb["train"]), "sentence1", "sentence2", "score", "128"),
            "STS-B dev (pairs, max_length 128)": (str(stsb["dev"]), "sentence1", "sentence2", "score", "128"),
            "Rotten Tomatoes (default max_length)": (str(rtp), "text", "", "label", "")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="defib-preflight-") as tmp:
        tmp = Path(tmp)
        big, small = tmp / "rows.csv", tmp / "rows_small.csv"
        synthesise(big, args.rows)
        synthesise(small, args.rows // 10, seed=1)
        mb = big.stat().st_size / 1e6
        bare = run(BARE.format(batch=BATCH, max_length=MAX_LENGTH), str(big))
        check = run(CHECK, str(big), "text", "", "score", str(MAX_LENGTH))
        check_small = run(CHECK, str(small), "text", "", "score", str(MAX_LENGTH))
        real = {name: run(CHECK, *spec) for name, spec in real_files(tmp).items()}
    write(args, mb, bare, check, check_small, real)


def write(args, mb: float, bare: dict, check: dict, small: dict, real: dict[str, dict]) -> None:
    rate_bare, rate_check = bare["rows"] / bare["seconds"], check["rows"] / check["seconds"]
    lines = [
        f"Command: `python bench/preflight/run.py --rows {args.rows}`  ",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {os.cpu_count()} CPUs "
        f"({platform.processor() or platform.machine()}), shared; load average before the run "
        f"{os.getloadavg()[0]:.1f}; rows: {args.rows:,} short texts from STS-B sentences ({mb:.0f} MB CSV), "
        f"max_length {MAX_LENGTH}, all-MiniLM-L6-v2's fast tokenizer.",
        "",
        "| measure | bare tokenizer | defib check |",
        "|---|---|---|",
        f"| rows | {bare['rows']:,} (in memory) | {check['rows']:,} (read from the CSV) |",
        f"| seconds (work only) | {bare['seconds']:.1f} | {check['seconds']:.1f} |",
        f"| rows/s | {rate_bare:,.0f} | {rate_check:,.0f} ({rate_check / rate_bare:.2f}x bare) |",
        f"| seconds, whole process (imports, model files) | {bare['process_seconds']:.1f} | "
        f"{check['process_seconds']:.1f} |",
        f"| peak memory (max RSS) | {bare['maxrss_mb']:.0f} MB (holds the rows) | {check['maxrss_mb']:.0f} MB |",
        f"| peak memory at {small['rows']:,} rows | - | {small['maxrss_mb']:.0f} MB |",
        "",
        "What it finds on the real data:",
        "",
        "| data | rows | seconds | verdict | findings |",
        "|---|---|---|---|---|",
    ]
    for name, r in real.items():
        found = "<br>".join(f"{c} ({sev}): {msg}" for c, sev, msg in r["findings"]) or "none"
        lines.append(f"| {name} | {r['rows']:,} | {r['seconds']:.1f} | {r['verdict']} | {found} |")
    table = "\n".join(lines)
    print(table)
    readme = args.readme
    head = readme.read_text(encoding="utf-8").split("<!-- results -->")[0] if readme.exists() else ""
    readme.write_text(head + "<!-- results -->\n" + table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
