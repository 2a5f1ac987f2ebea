"""More than one process: statistics reduced across torchrun ranks, rank 0 alone reports.

Real process groups (gloo, CPU), no mocks: the reduction itself on two
spawned ranks with known numbers, then ``defib run`` and ``defib train``
under ``torchrun --nproc_per_node=2``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from support import SCRIPTS, run_defib

from defib.evidence.distributed import reduce_signals
from defib.signals.run import PredSignals, Signals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    s = Signals(step=10)
    p = s.preds = PredSignals(task="classification", n_classes=3)
    p.spread.add(10, 0.2 if rank == 0 else 0.6)        # each rank's own estimate
    p.loss_window.add(10, 1.0 if rank == 0 else 2.0)
    p.baseline.add(10, 1.1)
    p.label_counts = {0: 5, 1: 3} if rank == 0 else {1: 4, 2: 8}
    p.pred_counts = {0: 8} if rank == 0 else {0: 10, 2: 2}
    reduce_signals(s)
    torch.save({"spread": p.spread.last, "spread_pairs": p.spread.pairs(), "loss": p.loss_window.last,
                "labels": p.label_counts, "preds": p.pred_counts, "ranks": s.config.get("ranks")},
               os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_reduction_averages_estimates_and_sums_counts_on_every_rank(tmp_path):
    mp.spawn(_rank_main, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["spread"] == pytest.approx(0.4) and got["spread_pairs"][-1] == (10, pytest.approx(0.4))
        assert got["loss"] == pytest.approx(1.5)
        assert got["labels"] == {0: 5, 1: 7, 2: 8} and got["preds"] == {0: 18, 2: 2}
        assert got["ranks"] == 2


def test_reduction_is_a_no_op_without_a_process_group():
    s = Signals(step=3)
    s.preds = PredSignals(task="regression")
    s.preds.spread.add(3, 0.5)
    reduce_signals(s)
    assert s.preds.spread.last == 0.5 and "ranks" not in s.config


def _torchrun(n: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--master_port={_free_port()}",
            *args]


def test_defib_run_under_torchrun_reports_once_and_matches_one_process(tiny_model_dir, tmp_path):
    script = [str(SCRIPTS / "tiny_ddp.py"), "--model", str(tiny_model_dir), "--fault", "shape"]
    runs = {}
    for n in (1, 2):
        (tmp_path / str(n)).mkdir()
        runs[n] = run_defib(tmp_path / str(n), command=_torchrun(n, *script), timeout=600)
    one, two = runs[1], runs[2]
    assert two.report is not None, two
    assert two.report["rank"] == 0 and two.report["ranks"] == 2
    assert two.stdout.count("Explain a finding") == 1  # one report, rank 0's
    assert two.report["steps_observed"] == 60
    codes = lambda r: [f["code"] for f in r["findings"] if f["severity"] != "info"]  # noqa: E731
    assert two.report["verdict"] == one.report["verdict"] == "flatlined", (one, two)
    assert codes(two.report) == codes(one.report) and codes(two.report)[0] == "L001"


def test_watch_api_under_torchrun_reports_and_writes_on_rank_zero_only(tiny_model_dir, tmp_path):
    html = tmp_path / "report.html"
    cmd = _torchrun(2, str(SCRIPTS / "tiny_ddp.py"), "--model", str(tiny_model_dir), "--fault", "shape",
                    "--steps", "30", "--watch", str(html))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("Explain a finding") == 1, proc.stdout  # rank 0's report, not one per rank
    assert "L001" in proc.stdout
    assert (tmp_path / "report.html.0").exists() and not (tmp_path / "report.html.1").exists()
    assert proc.stderr.count("defib: predictions flatlined") <= 1, proc.stderr


def test_defib_train_under_torchrun(tiny_model_dir, tmp_path):
    data = tmp_path / "train.csv"
    from rules.helpers import sentences

    data.write_text("text,score\n" + "".join(f"{t},{s + 0.5}\n" for t, s in sentences(600)), encoding="utf-8")
    out = tmp_path / "model"
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", COLUMNS="200")
    cmd = _torchrun(2, "-m", "defib.cli", "train", str(data), "--text", "text", "--label", "score", "--model",
                    str(tiny_model_dir), "--out", str(out), "--epochs", "2", "--lr", "3e-3", "--no-progress")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("defib train:") == 1 and proc.stdout.count("model written to") == 1, proc.stdout
    assert (out / "model.safetensors").exists() and (out / "defib_train.json").exists()
    assert not list(tmp_path.glob(".model.*"))
    # 540 rows / (16 per rank x 2 ranks) = 17 steps per epoch: the ranks really split the data
    assert "(regression, 34 optimizer steps observed)" in proc.stdout, proc.stdout
