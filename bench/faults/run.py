"""Fault benchmark: run defib on every case in cases.toml and score the diagnoses.

    python bench/faults/run.py                    # every case (long: run it alone)
    python bench/faults/run.py --smoke            # 2 healthy + 3 faulty cases
    python bench/faults/run.py --only NAME,NAME   # some cases
    python bench/faults/run.py --reuse            # rescore the JSON already in runs/

Each case runs as
    defib run --steps N --json runs/NAME.json -- python SCRIPT --max-steps M ARGS
from the manifest's folder, one at a time, with its output in runs/NAME.log.
The summary and a row per case are printed as markdown and, for a full run,
written into bench/README.md between the ``<!-- faults:begin -->`` and
``<!-- faults:end -->`` markers (the rest of that file is kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_MANIFEST = HERE / "cases.toml"
DEFAULT_README = REPO / "bench" / "README.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"
ALARM_VERDICTS = ("flatlined", "at_risk")
WHERE_TOLERANCE = 2  # lines either side of a planted fault line that still count as "found it"
REQUIRED = {"script": str, "args": list, "task": str, "style": str, "cause": str,
            "fault_lines": list, "twin": str, "description": str}
SMOKE_HEALTHY, SMOKE_FAULTY = 2, 3
# --smoke: one regression and one classification healthy run, and three faults from three areas
# (loss, data, optim) in three training styles; missing names fall back to the manifest's order
SMOKE_CASES = ("stsb_loop_cls", "rt_loop_weighted", "stsb_loop_unsqueezed", "rt_loop_invmask", "stsb_trainer_lr1e3")


class ManifestError(Exception):
    pass


@dataclass
class Case:
    name: str
    script: str
    args: list[str]
    task: str
    style: str
    cause: str
    fault_lines: list[int]
    twin: str
    description: str
    max_steps: int | None = None  # this case's horizon, when the default is too short for its healthy reference

    @property
    def healthy(self) -> bool:
        return not self.cause


@dataclass
class Result:
    case: Case
    report: dict | None = None
    seconds: float | None = None
    exit_code: int | None = None
    note: str = ""
    detected: bool | None = None   # faulty: an alarm; healthy: a false alarm
    top1: str | None = None
    top1_ok: bool | None = None
    top3_ok: bool | None = None
    steps: int | None = None
    where_ok: bool | None = None
    extra: dict = field(default_factory=dict)


def load_manifest(path: Path) -> list[Case]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    tables = data.get("cases")
    if not isinstance(tables, dict) or not tables:
        raise ManifestError(f"{path}: no [cases.NAME] tables")
    cases = []
    for name, t in tables.items():
        for key, kind in REQUIRED.items():
            if key not in t:
                raise ManifestError(f"{path}: case {name!r} has no {key!r}")
            if not isinstance(t[key], kind):
                raise ManifestError(f"{path}: case {name!r}: {key!r} should be a {kind.__name__}")
        if not all(isinstance(x, int) for x in t["fault_lines"]):
            raise ManifestError(f"{path}: case {name!r}: fault_lines should be line numbers")
        cases.append(Case(name=name, script=t["script"], args=[str(a) for a in t["args"]], task=t["task"],
                          style=t["style"], cause=t["cause"], fault_lines=list(t["fault_lines"]),
                          twin=t["twin"], description=t["description"], max_steps=t.get("max_steps")))
    return cases


def select(cases: list[Case], only: str | None, smoke: bool) -> list[Case]:
    if only:
        names = [n.strip() for n in only.split(",") if n.strip()]
        known = {c.name: c for c in cases}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ManifestError(f"unknown case(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return [known[n] for n in names]
    if smoke:
        known = {c.name: c for c in cases}
        named = [known[n] for n in SMOKE_CASES if n in known]
        healthy = [c for c in named if c.healthy]
        faulty = [c for c in named if not c.healthy]
        scripts = {c.script for c in healthy}
        for c in cases:  # fill up: healthy runs of other scripts, faults of other causes
            if c.healthy and len(healthy) < SMOKE_HEALTHY and c.script not in scripts:
                healthy.append(c)
                scripts.add(c.script)
            elif not c.healthy and len(faulty) < SMOKE_FAULTY and c.cause not in {f.cause for f in faulty}:
                faulty.append(c)
        return healthy[:SMOKE_HEALTHY] + faulty[:SMOKE_FAULTY]
    return cases


def defib_command() -> list[str]:
    exe = Path(sys.executable).parent / "defib"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "defib.cli"]


def run_case(case: Case, base: Path, runs: Path, steps: int, max_steps: int, timeout: float,
             confirm: bool = False) -> Result:
    script = base / case.script
    out_json, log, meta = runs / f"{case.name}.json", runs / f"{case.name}.log", runs / f"{case.name}.meta.json"
    for p in (out_json, meta):
        p.unlink(missing_ok=True)
    # --steps 0: the script runs to its own end and prints its dev metric, so one run
    # measures both the diagnosis and the harm (defib does not change the training)
    stop = ["--steps", str(steps)] if steps else []
    cmd = defib_command() + ["run", *stop, *(["--confirm"] if confirm else []), "--json", str(out_json), "--",
                             sys.executable, case.script, "--max-steps", str(case.max_steps or max_steps)] + case.args
    # one intra-op thread unless told otherwise: on a small shared machine, two spinning
    # threads per process slow every step several-fold; the diagnosis does not depend on it
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    res = Result(case)
    if not script.exists():
        res.note = f"script not found: {case.script}"
        return res
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, cwd=base, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout)
            res.exit_code = proc.returncode
        except subprocess.TimeoutExpired:
            res.note = f"timed out after {timeout:.0f} s"
    res.seconds = time.perf_counter() - start
    meta.write_text(json.dumps({"seconds": res.seconds, "exit_code": res.exit_code, "note": res.note,
                                "command": cmd, "cwd": str(base)}, indent=1), encoding="utf-8")
    res.report = read_report(out_json)
    res.extra.update(dev_metric(log))
    if res.report is None and not res.note:
        res.note = f"no JSON report (defib exit {res.exit_code}; see runs/{case.name}.log)"
    return res


def confirm_case(case: Case, base: Path, runs: Path, max_steps: int, timeout: float) -> None:
    """``defib confirm runs/NAME.json --json runs/NAME.json -- python SCRIPT ...``: reruns only, no first run."""
    report = runs / f"{case.name}.json"
    cmd = defib_command() + ["confirm", str(report), "--json", str(report), "--",
                             sys.executable, case.script, "--max-steps", str(case.max_steps or max_steps)] + case.args
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    with (runs / f"{case.name}.confirm.log").open("w", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        try:
            subprocess.run(cmd, cwd=base, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            fh.write(f"timed out after {timeout:.0f} s\n")


def read_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


METRIC = re.compile(r"DEV_METRIC (\w+)=(\S+) pred_std=(\S+)")


def dev_metric(log: Path) -> dict:
    """The script's own last DEV_METRIC line: its dev metric after training."""
    try:
        found = METRIC.findall(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}
    if not found:
        return {}
    name, value, std = found[-1]

    def f(x: str) -> float | None:
        try:
            v = float(x)
        except ValueError:
            return None
        return v if v == v else None

    return {"metric_name": name, "metric": f(value), "pred_std": f(std)}


def harmed(res: "Result", twin: "Result | None") -> bool | None:
    """A faulty run hurt the model: its metric 0.1 below its healthy twin's, a collapsed spread, or no metric."""
    if twin is None or twin.extra.get("metric") is None:
        return None
    m, t = res.extra.get("metric"), twin.extra["metric"]
    if m is None:
        return None if res.report is None else True  # not run: unknown; crashed or NaN: no usable model
    ps, ts = res.extra.get("pred_std"), twin.extra.get("pred_std")
    return m <= t - 0.1 or (ps is not None and ts and ps < 0.5 * ts)


def reuse_case(case: Case, runs: Path) -> Result:
    res = Result(case, report=read_report(runs / f"{case.name}.json"))
    res.extra.update(dev_metric(runs / f"{case.name}.log"))
    meta = read_report(runs / f"{case.name}.meta.json") or {}
    res.seconds, res.exit_code, res.note = meta.get("seconds"), meta.get("exit_code"), meta.get("note", "")
    if res.report is None and not res.note:
        res.note = "no JSON report in runs/"
    return res


def same_file(reported: str | None, script: Path, base: Path) -> bool:
    if not reported:
        return False
    p = Path(reported)
    if p.name == script.name:
        return True
    try:
        return (p if p.is_absolute() else base / p).resolve() == script.resolve()
    except OSError:
        return False


def score(res: Result, base: Path) -> Result:
    rep, case = res.report, res.case
    if rep is None:
        # a faulty run that produced no report is a miss; a healthy one is left out of the false-alarm count
        if not case.healthy:
            res.detected, res.top1_ok, res.top3_ok = False, False, False
            res.where_ok = False if case.fault_lines else None
        return res
    findings = rep.get("findings") or []
    res.detected = rep.get("verdict") in ALARM_VERDICTS or any(f.get("severity") == "error" for f in findings)
    causes = [f.get("cause") for f in findings if f.get("cause")]
    res.top1 = causes[0] if causes else None
    if case.healthy:
        return res
    res.top1_ok = res.top1 == case.cause
    res.top3_ok = case.cause in causes[:3]
    hit = next((f for f in findings if f.get("cause") == case.cause), None)
    if hit is not None:
        res.steps = hit.get("step")
    if case.fault_lines:
        where = (hit or {}).get("where") or {}
        line = where.get("line")
        res.where_ok = (hit is not None and isinstance(line, int)
                        and same_file(where.get("file"), base / case.script, base)
                        and any(abs(line - fl) <= WHERE_TOLERANCE for fl in case.fault_lines))
    return res


def confirmation(res: Result, twin: Result | None) -> dict:
    """--confirm figures of one run: tried, recovered, seconds, and the after-spread against the healthy twin's."""
    fixes = (res.report or {}).get("confirmed_fixes") or []
    if not fixes:
        return {"tried": False}
    ok = next((f for f in fixes if f.get("recovered")), None)
    out = {"tried": True, "recovered": ok is not None, "seconds": [f.get("seconds") for f in fixes],
           "fix": (ok or fixes[0]).get("cause")}
    if ok is not None and twin is not None and twin.report is not None:
        from defib.fixes.confirm import figures

        healthy = figures(twin.report, ok["after"]["step"]).get("spread_ratio")
        after = ok["after"].get("spread_ratio")
        out["twin_spread"], out["after_spread"] = healthy, after
        # a real recovery reaches at least half the healthy twin's spread at the same step
        out["real"] = healthy is None or (after is not None and after >= 0.5 * healthy)
    return out


def _confirm_rows(results: list[Result], by_name: dict[str, Result]) -> list[str]:
    conf = {r.case.name: confirmation(r, by_name.get(r.case.twin)) for r in results}
    right = [r for r in results if not r.case.healthy and r.top1_ok]
    secs = [s for c in conf.values() for s in c.get("seconds", []) if isinstance(s, (int, float))]
    false_ok = [r.case.name for r in results if r.case.healthy and conf[r.case.name].get("recovered")]
    unreal = [n for n, c in conf.items() if c.get("recovered") and c.get("real") is False]
    hurt = [r for r in right if harmed(r, by_name.get(r.case.twin))]
    return [
        f"| fixes confirmed, among faulty runs whose top-1 cause is right | "
        f"{_rate([conf[r.case.name].get('recovered', False) for r in right])} |",
        # a fault that did not harm the model leaves no collapse for a fix to undo: the rate among those that did
        f"| fixes confirmed, among those runs that hurt the model | "
        f"{_rate([conf[r.case.name].get('recovered', False) for r in hurt])} |",
        f"| fixes confirmed with an after-spread at least half the healthy twin's, among faulty runs whose top-1 "
        f"cause is right | {_rate([conf[r.case.name].get('real', False) for r in right])} |",
        f"| confirmations on healthy runs | {len(false_ok)} {', '.join(false_ok)} |",
        f"| confirmations whose after-spread is below half the healthy twin's | {len(unreal)} {', '.join(unreal)} |",
        f"| median extra seconds per confirmation rerun | {statistics.median(secs) if secs else 'n/a'} "
        f"({len(secs)} reruns) |",
    ]


def _rate(flags: list[bool | None]) -> str:
    vals = [f for f in flags if f is not None]
    return f"{sum(vals)}/{len(vals)} ({100 * sum(vals) / len(vals):.0f}%)" if vals else "n/a"


def _mark(x: bool | None) -> str:
    return "n/a" if x is None else ("yes" if x else "**no**")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model})"


def render(results: list[Result], command: str, steps: int, max_steps: int, subset: bool) -> str:
    faulty = [r for r in results if not r.case.healthy]
    healthy = [r for r in results if r.case.healthy]
    ran = [r for r in results if r.report is not None]
    step_list = [r.steps for r in faulty if isinstance(r.steps, int)]
    with_lines = [r for r in faulty if r.case.fault_lines]
    by_name = {r.case.name: r for r in results}
    hurt = {r.case.name: harmed(r, by_name.get(r.case.twin)) for r in faulty}
    lines = [
        f"Command: `{command}`  ",
        f"Date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}; machine: {machine()}; "
        + (f"defib stops each script after {steps} optimizer steps (`--steps {steps}`, script `--max-steps {max_steps}`)."
         if steps else f"each script trains {max_steps} optimizer steps (`--max-steps {max_steps}`) under `defib run`, "
                       "then prints its dev metric."),
    ]
    own = sorted({f"{r.case.name} ({r.case.max_steps})" for r in results if r.case.max_steps})
    if own:
        lines.append(f"Cases with their own horizon (manifest `max_steps`): {', '.join(own)}.")
    if subset:
        lines.append(f"\nA subset of the manifest: {len(results)} case(s).")
    lines += [
        "",
        "| measure | value |",
        "|---|---|",
        f"| faulty runs detected (verdict flatlined or at_risk, or an error finding) | {_rate([r.detected for r in faulty])} |",
        f"| false alarms on healthy runs | {_rate([r.detected for r in healthy])} |",
        f"| top-1 cause correct | {_rate([r.top1_ok for r in faulty])} |",
        f"| top-3 cause correct | {_rate([r.top3_ok for r in faulty])} |",
        f"| median steps to the first correct finding | "
        f"{statistics.median(step_list) if step_list else 'n/a'} (found in {len(step_list)}/{len(faulty)}) |",
        f"| `where` within {WHERE_TOLERANCE} lines of the planted fault | {_rate([r.where_ok for r in with_lines])} |",
        f"| runs without a report | {len(results) - len(ran)}/{len(results)} |",
        f"| faulty runs that hurt the model (dev metric >= 0.1 below the healthy twin's, or spread halved) | "
        f"{_rate(list(hurt.values()))} |",
        *(_confirm_rows(results, by_name) if any((r.report or {}).get("confirmed_fixes") for r in results) else []),
        "",
    ]
    confirmed = any((r.report or {}).get("confirmed_fixes") for r in results)
    conf = {r.case.name: confirmation(r, by_name.get(r.case.twin)) for r in results} if confirmed else {}
    lines += [
        "| case | expected cause | verdict | top-1 cause | correct? | steps | where ok? | dev metric (twin) | hurt? | seconds |"
        + (" confirmed fix (after-spread, twin's) |" if confirmed else ""),
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if confirmed else ""),
    ]
    for r in results:
        c = r.case
        verdict = r.report.get("verdict") if r.report is not None else f"no report ({r.note})"
        correct = (None if r.detected is None else not r.detected) if c.healthy else r.top1_ok
        twin = by_name.get(c.twin)
        metric = _metric(r) + (f" ({_metric(twin)})" if twin is not None and not c.healthy else "")
        lines.append(f"| {c.name} | {c.cause or '(healthy)'} | {verdict} | {r.top1 or '-'} | {_mark(correct)} | "
                     f"{'-' if r.steps is None else r.steps} | {_mark(r.where_ok)} | {metric} | "
                     f"{_mark(hurt.get(c.name)) if not c.healthy else '-'} | "
                     f"{'-' if r.seconds is None else f'{r.seconds:.0f}'} |"
                     + (f" {_confirm_cell(conf[c.name])} |" if confirmed else ""))
    lines.append("")
    lines.append("correct?: faulty cases, the top-1 cause is the planted one; healthy cases, no alarm.")
    return "\n".join(lines)


def _confirm_cell(c: dict) -> str:
    """One case's confirmation: '-' when nothing was rerun, else the fix's cause, yes/no, the spreads."""
    if not c.get("tried"):
        return "-"
    if not c.get("recovered"):
        return f"no ({c.get('fix')})"
    spreads = ""
    if c.get("after_spread") is not None:
        twin = c.get("twin_spread")
        spreads = f" ({c['after_spread']:.2f}, {twin:.2f})" if twin is not None else f" ({c['after_spread']:.2f})"
    return f"**yes** {c.get('fix')}{spreads}"


def _metric(r: Result) -> str:
    m = r.extra.get("metric")
    return "-" if m is None else f"{r.extra.get('metric_name', '')} {m:.3f}"


def write_section(readme: Path, body: str) -> None:
    text = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    block = f"{BEGIN}\n{body}\n{END}"
    if BEGIN in text and END in text and text.index(BEGIN) < text.index(END):
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Fault benchmark\n\n" + block + "\n"
    readme.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="cases.toml (scripts are relative to its folder)")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--smoke", action="store_true", help=f"{SMOKE_HEALTHY} healthy + {SMOKE_FAULTY} faulty cases")
    ap.add_argument("--steps", type=int, default=0, help="defib run --steps N (0: let the script finish and evaluate)")
    ap.add_argument("--max-steps", type=int, default=100, help="the script's --max-steps M")
    ap.add_argument("--confirm", action="store_true", help="defib run --confirm: rerun with the fix and score it")
    ap.add_argument("--confirm-pass", action="store_true",
                    help="defib confirm on the reports already in the runs folder (no first run), then score")
    ap.add_argument("--jobs", type=int, default=1, help="parallel runs (only 1: the machine is small)")
    ap.add_argument("--resume", action="store_true", help="rerun only the cases that have no result in the runs folder")
    ap.add_argument("--reuse", action="store_true", help="rescore the JSON already in the runs folder, run nothing")
    ap.add_argument("--runs", type=Path, default=None, help="where JSON and logs go (default: runs/ next to the manifest)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per case before it is killed")
    ap.add_argument("--readme", type=Path, default=None,
                    help="markdown file whose faults section is replaced (default: bench/README.md on a full run)")
    ap.add_argument("--no-readme", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.jobs != 1:
        ap.error("only --jobs 1 is supported")
    if args.only and args.smoke:
        ap.error("--only and --smoke exclude each other")
    try:
        manifest = args.manifest.resolve()
        cases = select(load_manifest(manifest), args.only, args.smoke)
    except ManifestError as exc:
        print(f"run.py: error: {exc}", file=sys.stderr)
        return 2
    base = manifest.parent
    runs = (args.runs or base / "runs").resolve()
    runs.mkdir(parents=True, exist_ok=True)

    results = []
    for i, case in enumerate(cases, 1):
        done = (runs / f"{case.name}.meta.json").exists() and (runs / f"{case.name}.json").exists()
        if args.confirm_pass:
            if done:
                print(f"[{i}/{len(cases)}] {case.name}: confirm ...", end=" ", flush=True)
                confirm_case(case, base, runs, args.max_steps, args.timeout)
                fixes = (read_report(runs / f"{case.name}.json") or {}).get("confirmed_fixes") or []
                print(", ".join(f"{f['cause']} {'confirmed' if f['recovered'] else 'not confirmed'}" for f in fixes)
                      or "nothing to confirm", flush=True)
            res = reuse_case(case, runs)
        elif args.reuse or (args.resume and done):
            res = reuse_case(case, runs)
        else:
            print(f"[{i}/{len(cases)}] {case.name} ({case.cause or 'healthy'}) ...", end=" ", flush=True)
            res = run_case(case, base, runs, args.steps, args.max_steps, args.timeout, args.confirm)
        score(res, base)
        results.append(res)
        if not args.reuse and not args.confirm_pass and not (args.resume and done):
            verdict = res.report.get("verdict") if res.report else res.note
            print(f"{verdict}, top-1 {res.top1 or '-'}, {res.seconds:.0f} s", flush=True)

    shown = ["python bench/faults/run.py"] + (argv if argv is not None else sys.argv[1:])
    subset = bool(args.only or args.smoke)
    body = render(results, " ".join(shown), args.steps, args.max_steps, subset)
    (runs / "summary.md").write_text(body + "\n", encoding="utf-8")
    print()
    print(body)
    readme = args.readme if args.readme is not None else (None if subset else DEFAULT_README)
    if readme is not None and not args.no_readme:
        write_section(readme, body)
        print(f"\nwrote {readme}")
    elif subset and not args.no_readme:
        print("\n(a subset: bench/README.md left alone; pass --readme PATH to write it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
