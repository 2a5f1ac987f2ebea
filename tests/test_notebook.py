"""defib in a real Jupyter kernel: ``%%defib``, ``defib.watch`` in a cell, the live line, no hooks left behind.

One notebook, executed once by nbclient on an ipykernel (kernel start-up is
slow on a busy machine): the tiny-BERT training script of the ``defib run``
tests pasted into cells, healthy twice (a rerun), with a planted
``[B, 1]`` vs ``[B]`` loss, crashing, stopped by SIGINT (what the stop button
sends), under ``--max-steps``, and inside a ``with defib.watch()`` block;
then ``--confirm`` on the planted fault (the cell rerun with the fix) and on a
cell whose model was built in the cell before (a rerun it must refuse).
After each, a cell lists what defib could have left in torch: global module
and optimizer hooks, hooks on the model, patched functions, import hooks.
The planted fault's finding must show in the cell's HTML within the steps
``defib run`` needs on the same script, and that HTML is opened in headless
Chromium as the HTML report tests do.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import SCRIPTS, run_defib, tiny_script

pytest.importorskip("nbclient", reason="nbclient (the test extra) is not installed")
pytest.importorskip("ipykernel", reason="ipykernel (the test extra) is not installed")

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

pytestmark = pytest.mark.timeout(900)

FAULT_STEPS = 40
HEALTHY_STEPS = 30
MAX_STEPS = 7
CONFIRM_STEPS = 120  # as tests/test_confirm.py: by then the fixed tiny model's loss is clearly below the baseline

SETUP = '''
%load_ext defib
import json, sys, types
import defib
import torch._numpy  # noqa: F401 - imported inside a watch, it would keep defib's torch.tanh wrapper as its own


def hooks_left():
    """What a watch could leave behind in this process."""
    import torch.nn.modules.module as mm
    import torch.optim.optimizer as oo
    seen, patched = set(), set()
    for name, mod in list(sys.modules.items()):
        if mod is None or name.split(".")[0] not in ("torch", "transformers"):
            continue
        for owner in [mod, *(v for v in list(vars(mod).values()) if isinstance(v, type))]:
            if id(owner) in seen:
                continue
            seen.add(id(owner))
            patched |= {f"{getattr(owner, '__name__', '?')}.{k}" for k, v in list(vars(owner).items())
                        if isinstance(v, types.FunctionType) and hasattr(v, "_defib_original")}
    model_ = globals().get("model")
    return {"module_hooks": sum(map(len, (mm._global_forward_hooks, mm._global_forward_pre_hooks,
                                          mm._global_backward_hooks, mm._global_backward_pre_hooks))),
            "optimizer_hooks": len(oo._global_optimizer_pre_hooks) + len(oo._global_optimizer_post_hooks),
            "model_hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model_.modules())
                           if model_ is not None else 0,
            "patched": sorted(patched),
            "finders": [type(f).__name__ for f in sys.meta_path if type(f).__module__.startswith("defib")]}
'''
CHECK = 'print("HOOKS", json.dumps(hooks_left()))'
BUILT_BEFORE = """
import torch
torch.manual_seed(0)
net = torch.nn.Linear(8, 1)
sgd = torch.optim.SGD(net.parameters(), lr=0.05)
X = torch.randn(512, 8)
Y = X @ torch.randn(8)
"""
TRAINED_HERE = """%%defib --confirm
for i in range(60):
    j = (i * 16) % 512
    loss = torch.nn.functional.mse_loss(net(X[j:j + 16]), Y[j:j + 16])  # [16, 1] against [16]: the planted fault
    sgd.zero_grad()
    loss.backward()
    sgd.step()
net_weight = net.weight.detach().clone()
"""
CLEAN = {"module_hooks": 0, "optimizer_hooks": 0, "model_hooks": 0, "patched": [], "finders": []}


def script_cell(magic: str | None, model_dir: Path, *args: str) -> str:
    """The test script as a notebook cell: its arguments set in ``sys.argv``, under ``magic`` when given."""
    argv = ["tiny_regression.py", "--model", str(model_dir), *args]
    body = f"sys.argv = {argv!r}\n" + (SCRIPTS / "tiny_regression.py").read_text(encoding="utf-8")
    return f"{magic}\n{body}" if magic else body


def watch_cell(model_dir: Path) -> str:
    body = script_cell(None, model_dir, "--steps", str(HEALTHY_STEPS))
    return "with defib.watch() as w:\n" + textwrap.indent(body, "    ")


@dataclass
class Executed:
    nb: nbformat.NotebookNode
    names: list[str]
    updates: dict[int, list[str]] = field(default_factory=dict)  # cell -> the live line's redrawn texts

    def cell(self, name: str):
        return self.nb.cells[self.names.index(name)]

    def outputs(self, name: str) -> list:
        return self.cell(name).outputs

    def html(self, name: str) -> list[str]:
        return [o["data"]["text/html"] for o in self.outputs(name) if "text/html" in o.get("data", {})]

    def live(self, name: str) -> list[str]:
        """The live line's outputs (its last state) in a cell."""
        return [o["data"]["text/plain"] for o in self.outputs(name)
                if o.output_type == "display_data" and o["data"].get("text/plain", "").startswith("defib: ")]

    def hooks(self, name: str) -> dict:
        text = "".join(o.get("text", "") for o in self.outputs(name) if o.output_type == "stream")
        return json.loads(text.split("HOOKS ", 1)[1].splitlines()[0])


class Recorder(NotebookClient):
    """nbclient, keeping the in-place updates of display outputs (the notebook keeps only their last state)."""

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] == "update_display_data":
            self.updates.setdefault(cell_index, []).append(msg["content"]["data"].get("text/plain", ""))
        return super().process_message(msg, cell, cell_index)


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory) -> Executed:
    m = tiny_model_dir
    cells = [
        ("setup", SETUP),
        ("healthy", script_cell("%%defib", m, "--steps", str(HEALTHY_STEPS))),
        ("healthy-check", CHECK),
        ("rerun", script_cell("%%defib", m, "--steps", str(HEALTHY_STEPS))),
        ("rerun-check", CHECK),
        ("crash", script_cell("%%defib", m, "--crash-after", "5")),
        ("crash-check", CHECK),
        ("interrupt", script_cell("%%defib", m, "--interrupt-after", "5")),
        ("interrupt-check", CHECK),
        ("fault", script_cell("%%defib", m, "--fault", "shape", "--steps", str(FAULT_STEPS))),
        ("fault-check", CHECK),
        ("max-steps", script_cell(f"%%defib --max-steps {MAX_STEPS}", m, "--steps", str(HEALTHY_STEPS))),
        ("max-steps-check", CHECK),
        ("watch", watch_cell(m)),
        ("watch-shown", CHECK + "\nw.diagnosis"),
        ("left-open", "w2 = defib.watch().start()\n" + CHECK),
        ("left-open-check", CHECK + "\nprint('RUNNING', w2.running)"),
        ("confirm", script_cell("%%defib --confirm", m, "--fault", "shape", "--steps", str(CONFIRM_STEPS),
                                "--print-losses")),
        ("confirm-check", CHECK),
        ("built-before", BUILT_BEFORE),
        ("trained-here", TRAINED_HERE),
        ("trained-here-check", CHECK + "\nprint('UNTOUCHED', bool((net.weight == net_weight).all()))"),
    ]
    nb = nbformat.v4.new_notebook()
    for name, source in cells:
        cell = nbformat.v4.new_code_cell(source)
        if name in ("crash", "interrupt"):
            cell.metadata["tags"] = ["raises-exception"]
        nb.cells.append(cell)
    client = Recorder(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    client.updates = {}
    client.execute()
    names = [n for n, _ in cells]
    return Executed(nb, names, {names[i]: u for i, u in client.updates.items()})


@pytest.fixture(scope="module")
def defib_run_fault(tiny_model_dir, tmp_path_factory) -> dict:
    """``defib run`` on the same script and fault: the steps the notebook must match."""
    tmp = tmp_path_factory.mktemp("fault")
    r = run_defib(tmp, command=tiny_script(tiny_model_dir, "--fault", "shape", "--steps", str(FAULT_STEPS)))
    assert r.report is not None and r.report["verdict"] == "flatlined", r
    return r.report


def _first_seen(html: str, code: str) -> int:
    block = re.search(rf'<article class="finding[^"]*" id="finding-{code}">(.*?)</article>', html, re.S)
    assert block is not None, f"no {code} in the cell's HTML"
    return int(re.search(r"first seen at step (\d+)", block.group(1)).group(1))


def test_healthy_cell_shows_the_report_and_one_live_line(run):
    for name in ("healthy", "rerun"):
        (html,) = run.html(name)
        assert 'class="defib-report"' in html and "verdict-healthy" in html
        assert f"{HEALTHY_STEPS} optimizer steps observed" in html
        assert 'id="plot-spread"' in html  # the plots are drawn from the diagnosis itself
        # one line, redrawn in place while the steps went by, left saying how the run ended
        assert run.live(name) == [f"defib: watched {HEALTHY_STEPS} optimizer steps: healthy"]
        steps = [int(m.group(1)) for u in run.updates[name] if (m := re.match(r"defib: step (\d+)", u))]
        assert len(steps) >= 3 and steps == sorted(steps), run.updates[name]
        assert any("against target spread" in u for u in run.updates[name]), run.updates[name]


def test_no_hooks_leak_into_the_next_cell(run):
    for name in ("healthy", "rerun", "crash", "interrupt", "fault", "max-steps", "watch", "left-open", "confirm",
                 "trained-here"):
        assert run.hooks(f"{name}-check" if name != "watch" else "watch-shown") == CLEAN, name


def test_a_watch_left_open_ends_with_its_cell(run):
    during = run.hooks("left-open")
    # one import hook for transformers, one for the trackers (torch.utils.tensorboard)
    assert during["optimizer_hooks"] == 2 and during["patched"] and set(during["finders"]) == {"PostImport"}, during
    assert "RUNNING False" in "".join(o.get("text", "") for o in run.outputs("left-open-check"))
    # the cell's end stopped it and showed what it saw (nothing: inconclusive)
    (html,) = run.html("left-open")
    assert "verdict-inconclusive" in html


def test_crash_and_interrupt_show_the_report_then_fail_the_cell(run):
    for name, error in (("crash", "RuntimeError"), ("interrupt", "KeyboardInterrupt")):
        outputs = run.outputs(name)
        (err,) = [o for o in outputs if o.output_type == "error"]
        assert err.ename == error, err
        (html,) = run.html(name)
        assert "5 optimizer steps observed" in html
        assert outputs.index(err) > max(i for i, o in enumerate(outputs) if "text/html" in o.get("data", {}))


def test_max_steps_stops_the_cell(run):
    (html,) = run.html("max-steps")
    assert f"{MAX_STEPS} optimizer steps observed" in html
    assert run.live("max-steps") == [f"defib: watched {MAX_STEPS} optimizer steps: healthy"]
    assert not [o for o in run.outputs("max-steps") if o.output_type == "error"]


def test_watch_block_shows_the_diagnosis_and_the_diagnosis_renders_itself(run):
    (html,) = run.html("watch")
    assert "verdict-healthy" in html
    (result,) = [o for o in run.outputs("watch-shown") if o.output_type == "execute_result"]
    undated = re.compile(r"<dc:date>.*?</dc:date>")  # each drawing of a plot is stamped with its time
    assert undated.sub("", result.data["text/html"]) == undated.sub("", html)  # the same report, rendered again
    # a front end without HTML shows the terminal report, not the dataclass
    assert "HEALTHY  (regression, 30 optimizer steps observed)" in result.data["text/plain"]


def test_planted_fault_found_within_the_steps_of_defib_run(run, defib_run_fault):
    (html,) = run.html("fault")
    assert "verdict-flatlined" in html
    expected = {f["code"]: f["step"] for f in defib_run_fault["findings"]}
    assert _first_seen(html, "L001") <= expected["L001"]
    assert _first_seen(html, "S001") <= expected["S001"]
    assert f"Flatlined at step {defib_run_fault['flatline']['step']}" in html
    # the live line named the cause while training ran, at the step defib run found it
    named = [u for u in run.updates["fault"] if "[L001] loss.shape_mismatch" in u]
    assert named and int(re.match(r"defib: step (\d+)", named[0]).group(1)) <= max(expected["L001"], 1), \
        run.updates["fault"]
    stderr = "".join(o.text for o in run.outputs("fault") if o.output_type == "stream" and o.name == "stderr")
    assert "defib:" not in stderr  # the live line replaces the announcements on stderr
    assert run.live("fault") == [f"defib: watched {FAULT_STEPS} optimizer steps: flatlined at step "
                                 f"{defib_run_fault['flatline']['step']}"]


def _stdout(run: Executed, name: str) -> str:
    return "".join(o.text for o in run.outputs(name) if o.output_type == "stream" and o.name == "stdout")


def test_confirm_reruns_the_cell_with_the_fix_and_the_report_shows_it(run):
    (html,) = run.html("confirm")  # the report under the cell, updated in place with the rerun's result
    assert "verdict-flatlined" in html
    block = re.search(r'<section id="confirmed">(.*?)</section>', html, re.S)
    assert block is not None and "loss.shape_mismatch: confirmed: the collapse went away" in block.group(1), html
    out = _stdout(run, "confirm")
    assert f"rerun 1/2, {CONFIRM_STEPS} optimizer steps" in out and "defib: confirmed: spread" in out, out
    # the rerun trained as the cell does, but its prints are defib's business, not the cell's: one run's losses
    assert len(re.findall(r"^step \d+ loss ", out, re.M)) == CONFIRM_STEPS, out
    # the text form, for a front end without HTML, says it too
    (report,) = [o for o in run.outputs("confirm") if "text/html" in o.get("data", {})]
    assert "fix for loss.shape_mismatch" in report.data["text/plain"] and "- confirmed" in report.data["text/plain"]


def test_confirm_refuses_to_rerun_a_model_built_in_another_cell(run):
    out = _stdout(run, "trained-here")
    assert "rerun 1/2" in out and "the cell trains a model built before it" in out, out
    (html,) = run.html("trained-here")
    assert "verdict-flatlined" in html and 'id="confirmed"' not in html  # nothing claimed
    # refused at the rerun's first call of the model: its weights are what the first run left
    assert "UNTOUCHED True" in "".join(o.get("text", "") for o in run.outputs("trained-here-check"))


def test_fault_cell_html_in_chromium(run, tmp_path):
    """The cell's HTML in a page of its own, beside the notebook's content: drawn, inert, its styles kept inside."""
    from browser import assert_clean, assert_plots_drawn, require_chromium, visit

    require_chromium()
    (html,) = run.html("fault")
    page = tmp_path / "cell.html"
    page.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>notebook</title></head><body>'
                    '<h2 id="outside">a notebook heading</h2><div class="output">' + html + "</div></body></html>",
                    encoding="utf-8")
    v = visit(page, visible=("#verdict", "#finding-L001 .message", "#finding-L001 .fix"),
              probes=("getComputedStyle(document.querySelector('#outside')).borderBottomStyle",
                      "getComputedStyle(document.querySelector('.defib-report h2')).borderBottomStyle"))
    assert_clean(v)
    assert_plots_drawn(v, {f"plot-{p}" for p in ("predictions", "final-distribution", "loss", "spread",
                                                   "grad-norm", "lr-update")})
    assert all(v.visible.values()), v.visible
    assert list(v.probes.values()) == ["none", "solid"], v.probes


def test_import_defib_does_not_import_ipython():
    """IPython is installed here (the test extra); ``import defib`` must still not load it."""
    import subprocess
    import sys

    code = "import sys, defib; print(sorted(m for m in ('IPython', 'ipykernel') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]", out


def test_the_magics_options_parse_as_documented():
    """``%%defib [--steps N] [--confirm]`` as the issue writes it; ``--max-steps`` as on the command line."""
    from IPython.core.error import UsageError

    from defib.integrations.notebook import _parser

    args = _parser().parse_args(["--steps", "7", "--confirm", "--confirm-steps", "30", "--ignore", "L004"])
    assert (args.max_steps, args.confirm, args.confirm_steps, args.confirm_runs, args.ignore) == (7, True, 30, 2, ["L004"])
    assert _parser().parse_args(["--max-steps", "9"]).max_steps == 9
    with pytest.raises(UsageError, match="%%defib: unrecognized arguments: --stpes"):
        _parser().parse_args(["--stpes", "7"])
