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
    parser.add_argument("--max-steps", type=int, default=0,
                        help="Stop the cell's training after N optimizer steps (0: run to the end).")
    parser.add_argument("--ignore", action="append", default=[], metavar="CODE",
                        help="A rule code to leave out of the diagnosis (repeatable).")
    return parser


def defib_cell(line: str, cell: str) -> Any:
    """``%%defib [--max-steps N] [--ignore CODE]``: watch the training this cell runs; the report shows under it.

    The cell runs as it would without the magic (its names land in the
    notebook, its last expression is its result); an error in it still fails
    the cell, after the report of what ran before it.
    """
    from IPython import get_ipython

    from defib.api import watch

    args = _parser().parse_args(shlex.split(line, comments=True))
    if args.max_steps < 0:
        _parser().error("--max-steps must be 0 or more")
    shell = get_ipython()
    w = watch(ignore=tuple(args.ignore))
    if args.max_steps:
        w.watcher.on_step(_stop_after(args.max_steps))
    with w:  # a watch in a notebook shows its diagnosis when the block ends, whatever ended it
        try:
            result = run_cell_body(shell, cell)
        except StopTraining:
            result = None
    if not in_notebook():  # a terminal IPython: the text report
        print(w.diagnosis)
    return result


def _stop_after(limit: int) -> Callable[[int], None]:
    def stop(step: int) -> None:
        if step >= limit:
            raise StopTraining(0)

    return stop


def run_cell_body(shell: Any, cell: str) -> Any:
    """Run a cell's code as IPython would: magics expanded, in the notebook's namespace, the last expression returned.

    The source goes into IPython's cache under a cell file name, so tracebacks
    and a finding's ``where`` show the cell's lines.
    """
    source = shell.transform_cell(cell)
    tree = ast.parse(source)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    filename = shell.compile.cache(source)
    exec(compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)  # noqa: S102 - the user's own cell
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), shell.user_global_ns, shell.user_ns)  # noqa: S307
