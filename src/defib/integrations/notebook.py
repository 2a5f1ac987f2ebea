"""Jupyter, VS Code and Colab (one kernel protocol): the ``%%defib`` cell magic, the live line, a watch per cell.

In a notebook the cell is the unit of work, so it is the unit of a watch:

* while training runs, one output under the cell says the step, the current
  prediction spread against the target spread and the top finding as soon as
  there is one, redrawn in place (an IPython display handle), never a new line;
* when the cell ends, the watch ends with it: a ``trainer.train()``
  interrupted with the stop button never reaches its callback's end, and its
  hooks must not watch the next cell; the diagnosis of what ran is shown;
* ``%%defib`` watches what its cell runs and shows the report under it, as
  ``defib run`` does for a script.

Only a kernel loads this module's IPython parts (``%load_ext defib``, or a
watch started inside a kernel): ``import defib`` never imports IPython.
"""

from __future__ import annotations

import argparse
import ast
import shlex
import sys
import time
from typing import Any, Callable

from defib.diagnosis import Diagnosis
from defib.evidence.watch import Watcher
from defib.rules.fmt import num
from defib.stages.run import LiveDiagnosis, StopTraining

LIVE_SECONDS = 1.0  # between evaluation points the live line's step is redrawn at most this often


def in_notebook() -> bool:
    """True in a kernel whose front end draws rich output (Jupyter, VS Code, Colab); not a terminal, not a script."""
    ipython, zmqshell = sys.modules.get("IPython"), sys.modules.get("ipykernel.zmqshell")
    if ipython is None or zmqshell is None:
        return False
    return isinstance(ipython.get_ipython(), zmqshell.ZMQInteractiveShell)


class CellWatch:
    """One watch's life in a notebook cell: the live line while it runs, and its end when the cell ends.

    ``stop`` is the watch's own stop (it calls :meth:`close`); the cell's end
    calls it when nothing else did, and shows the diagnosis.
    """

    def __init__(self, watcher: Watcher, live: LiveDiagnosis, stop: Callable[[], Diagnosis]):
        from IPython import get_ipython
        from IPython.display import display

        self.watcher, self.live, self._stop = watcher, live, stop
        self.closed = False
        self._drawn_at = 0.0
        self._handle = display({"text/plain": "defib: watching, waiting for the first optimizer step"},
                               raw=True, display_id=True)
        self._shell = get_ipython()
        self._shell.events.register("post_run_cell", self._cell_ended)
        watcher.on_evaluate(self._draw)  # after the LiveDiagnosis: its findings are fresh
        watcher.on_step(self._step)

    def _step(self, step: int) -> None:
        if time.monotonic() - self._drawn_at >= LIVE_SECONDS:
            self._draw(step)

    def _draw(self, step: int) -> None:
        if not self.closed:
            self._handle.update({"text/plain": live_line(step, self.watcher, self.live.latest)}, raw=True)
            self._drawn_at = time.monotonic()

    def close(self, diagnosis: Diagnosis) -> None:
        """The watch stopped: the line says how the run ended (the report follows it)."""
        if self.closed:
            return
        self.closed = True
        self._shell.events.unregister("post_run_cell", self._cell_ended)
        self._handle.update({"text/plain": end_line(diagnosis)}, raw=True)

    def _cell_ended(self, _result: Any) -> None:
        if not self.closed:
            from IPython.display import display

            display(self._stop())


def live_line(step: int, watcher: Watcher, latest: Diagnosis | None) -> str:
    """The step, the spread against the target's (as of the last evaluation point), the top finding so far."""
    parts = [f"defib: step {step}"]
    p = watcher.s.preds
    if p is not None and p.task == "regression" and p.batch_std is not None and p.target_std is not None:
        parts.append(f"prediction spread {num(p.batch_std)} against target spread {num(p.target_std)}")
    elif p is not None and p.spread.last is not None:
        parts.append(f"predicted-class spread {num(p.spread.last)} of the labels'")
    top = latest.findings[0] if latest is not None and latest.findings else None
    if top is None:
        parts.append("no finding so far")
    else:
        parts.append(f"[{top.code}] {top.cause or top.title}, since step {top.step}")
    return "  |  ".join(parts)


def end_line(d: Diagnosis) -> str:
    verdict = d.verdict.replace("_", " ")
    if d.flatline and d.flatline.get("step") is not None:
        verdict += f" at step {d.flatline['step']}"
    return f"defib: watched {d.steps} optimizer steps: {verdict}"


# ------------------------------------------------------------------ %%defib
def register_magic(ipython: Any) -> None:
    ipython.register_magic_function(defib_cell, magic_kind="cell", magic_name="defib")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # a usage error is IPython's one-line error, not a SystemExit
        from IPython.core.error import UsageError

        raise UsageError(f"%%defib: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%%defib", add_help=False)
    # --steps: the and defib run's older spelling of --max-steps, kept as on the command line
    parser.add_argument("--max-steps", "--steps", type=int, default=0,
                        help="Stop the cell's training after N optimizer steps (0: run to the end).")
    parser.add_argument("--ignore", action="append", default=[], metavar="CODE",
                        help="A rule code to leave out of the diagnosis (repeatable).")
    parser.add_argument("--confirm", action="store_true",
                        help="Rerun the cell with the fix for the top cause and show whether the collapse goes away.")
    parser.add_argument("--confirm-runs", type=int, default=2, help="At most this many reruns to confirm a fix.")
    parser.add_argument("--confirm-steps", type=int, default=0,
                        help="Optimizer steps per confirmation rerun (0: as many as the run observed, at most 200).")
    return parser


def defib_cell(line: str, cell: str) -> Any:
    """``%%defib [--max-steps N] [--ignore CODE] [--confirm]``: watch the training this cell runs; the report shows under it.

    The cell runs as it would without the magic (its names land in the
    notebook, its last expression is its result); an error in it still fails
    the cell, after the report of what ran before it. ``--confirm``, after a
    cell that ended normally: the cell's code runs again with the fix for the
    top cause applied, as ``defib run --confirm`` reruns a script, and the
    report under the cell gains what the rerun showed.
    """
    from IPython import get_ipython

    from defib.api import watch

    args = _parser().parse_args(shlex.split(line, comments=True))
    for name in ("max_steps", "confirm_steps"):
        if getattr(args, name) < 0:
            _parser().error(f"--{name.replace('_', '-')} must be 0 or more")
    if args.confirm_runs < 1:
        _parser().error("--confirm-runs must be 1 or more")
    shell = get_ipython()
    code = CellCode(shell, cell)
    w = watch(ignore=tuple(args.ignore))
    if args.max_steps:
        w.watcher.on_step(_stop_after(args.max_steps))
    with w:  # a watch in a notebook shows its diagnosis when the block ends, whatever ended it
        result = code.run_until_stopped()
    if args.confirm:
        _confirm(w, code, args.confirm_runs, args.confirm_steps)
    if not in_notebook():  # a terminal IPython: the text report
        print(w.diagnosis)
    return result


def _stop_after(limit: int) -> Callable[[int], None]:
    def stop(step: int) -> None:
        if step >= limit:
            raise StopTraining(0)

    return stop


class CellCode:
    """A cell's code, compiled once as IPython would: magics expanded, run in the notebook's namespace.

    The source goes into IPython's cache under a cell file name, so tracebacks
    and a finding's ``where`` show the cell's lines; a ``--confirm`` rerun runs
    the same code object, so a fix planned for a line of the first run (its
    file and line) meets the same line again.
    """

    def __init__(self, shell: Any, cell: str):
        self.shell = shell
        source = shell.transform_cell(cell)
        tree = ast.parse(source)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        filename = shell.compile.cache(source)
        self.body = compile(tree, filename, "exec")
        self.last = None if last is None else compile(ast.Expression(last.value), filename, "eval")

    def run(self) -> Any:
        """Run the cell; the value of its last expression, if it ends with one."""
        ns = (self.shell.user_global_ns, self.shell.user_ns)
        exec(self.body, *ns)  # noqa: S102 - the user's own cell
        return None if self.last is None else eval(self.last, *ns)  # noqa: S307

    def run_until_stopped(self) -> Any:
        """:meth:`run`; None when defib stopped the training (``--max-steps``, a rerun's steps)."""
        try:
            return self.run()
        except StopTraining:
            return None


# ------------------------------------------------------------------ %%defib --confirm
class TrainedBefore(Exception):
    """A ``--confirm`` rerun called a model the first run trained: the rerun would go on training it."""


def _confirm(w: Any, code: CellCode, runs: int, steps: int) -> None:
    """Confirm the fix for the watched cell's top causes by rerunning the cell; the report shown gains the result."""
    from defib.stages.launch import confirm_reruns

    try:
        confirmed = confirm_reruns(w.to_dict(), CellRerun(code, w.watcher, w.ignore), runs, steps, say=print)
    except TrainedBefore:
        print("defib: --confirm: the cell trains a model built before it, which its first run has trained "
              "already; a rerun would go on training those weights and prove nothing. Build the model and its "
              "optimizer in the cell that trains them to confirm a fix there.")
        return
    w.diagnosis.extra["confirmed_fixes"] = confirmed
    if w.shown is not None:
        w.shown.update(w.diagnosis)


class CellRerun:
    """One ``--confirm`` rerun of a cell (:data:`defib.fixes.confirm.RunFn`): its code again, watched, with a fix.

    The rerun is defib's experiment, not the user's: its prints are kept out
    of the cell's output, it writes into no experiment tracker, and it must
    train from scratch: a module holding a parameter the first run trained
    (a model built in an earlier cell) stops it at its first call, before the
    fix or a step changes anything.
    """

    def __init__(self, code: CellCode, first: Watcher, ignore: tuple[str, ...]):
        import weakref

        self.code, self.ignore = code, ignore
        opt = first.optim.main()
        params = [p for m in first.roots() for p in m.parameters()]
        params += [p for g in opt.param_groups for p in g["params"]] if opt is not None else []
        # weak: the rerun's own model may take the first one's place (and memory) once the cell rebinds its name
        self.trained = {id(p): weakref.ref(p) for p in params}

    def __call__(self, extra_env: dict[str, str], steps: int) -> tuple[int, dict[str, Any]]:
        import contextlib
        import io
        import json

        import torch

        from defib.evidence.hooks import install
        from defib.fixes import build
        from defib.stages.run import FIX_ENV, final_diagnosis, run_report

        watcher = Watcher()
        live = LiveDiagnosis(watcher, None, ignore=self.ignore)
        watcher.fix = build(json.loads(extra_env[FIX_ENV]))
        watcher.on_step(_stop_after(steps))
        # registered before defib's hooks, so it runs before the fix or the watcher see the model
        guard = torch.nn.modules.module.register_module_forward_pre_hook(self._fresh)
        installed = install(watcher)
        status = 0
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                self.code.run_until_stopped()
        except TrainedBefore:
            raise
        except Exception:  # the cell failed with the fix in: a rerun that exits non-zero, as a script's would
            status = 1
        finally:
            guard.remove()
            installed.remove()
            watcher.detach()
        return status, run_report(final_diagnosis(live), watcher)

    def _fresh(self, module: Any, _args: Any) -> None:
        for p in module.parameters(recurse=False):
            ref = self.trained.get(id(p))
            if ref is not None and ref() is p:  # the same live object, not a new one at a freed one's address
                raise TrainedBefore()
