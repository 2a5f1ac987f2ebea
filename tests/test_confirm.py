"""``defib run --confirm``: a fix is confirmed only when the rerun's predictions vary again."""

from __future__ import annotations

import json
import sys

import pytest

from defib.fixes import plan
from defib.fixes.confirm import candidates, judge
from support import SCRIPTS, run_defib

FLAT = {"spread_ratio": 0.05, "loss": 2.1, "baseline_loss": 2.0, "verdict": "flatlined"}


def test_judge_confirms_only_a_real_recovery():
    recovered, _ = judge(FLAT, {"spread_ratio": 0.6, "loss": 1.2, "baseline_loss": 2.0, "verdict": "healthy"})
    assert recovered


@pytest.mark.parametrize("after, why", [
    ({"spread_ratio": 0.12, "loss": 1.9, "baseline_loss": 2.0, "verdict": "at_risk"}, "still flat"),  # near miss
    ({"spread_ratio": 0.5, "loss": 2.3, "baseline_loss": 2.0, "verdict": "at_risk"}, "no better"),
    ({"spread_ratio": 0.5, "loss": 1.0, "baseline_loss": 2.0, "verdict": "flatlined"}, "still flat"),
    ({"spread_ratio": None, "loss": None, "baseline_loss": None, "verdict": "inconclusive"}, "still flat"),
])
def test_judge_refuses_what_did_not_recover(after, why):
    recovered, reason = judge(FLAT, after)
    assert not recovered and why in reason


def test_judge_refuses_a_run_that_never_collapsed():
    healthy = {"spread_ratio": 0.7, "loss": 0.9, "baseline_loss": 2.0, "verdict": "at_risk"}
    recovered, reason = judge(healthy, {"spread_ratio": 0.8, "loss": 0.5, "baseline_loss": 2.0, "verdict": "healthy"})
    assert not recovered and "had not collapsed" in reason


def test_a_loss_no_better_than_the_constant_predictor_is_a_collapse_even_with_varying_predictions():
    not_learning = {"spread_ratio": 0.7, "loss": 1.9, "baseline_loss": 2.0, "verdict": "at_risk"}  # 0.95 of baseline
    learns = {"spread_ratio": 0.6, "loss": 1.0, "baseline_loss": 2.0, "verdict": "healthy"}
    assert judge(not_learning, learns)[0]
    recovered, reason = judge(not_learning, {"spread_ratio": 0.6, "loss": 1.85, "baseline_loss": 2.0, "verdict": "at_risk"})
    assert not recovered and "still 0.925 of the constant predictor" in reason  # better, but still not learning
    just_below = {"spread_ratio": 0.7, "loss": 1.78, "baseline_loss": 2.0, "verdict": "at_risk"}  # 0.89: learning
    assert "had not collapsed" in judge(just_below, learns)[1]


def test_a_slow_start_the_rerun_itself_calls_healthy_is_a_recovery():
    """A Huber loss on 0-1 targets learns slowly: the healthy twin itself ends at 0.91 of the constant predictor's
    after 100 steps. The fix that turns the collapsed run into exactly that run is confirmed; the same figures with
    a rerun that defib does not call healthy, or no better than the run, are not."""
    slow = {"spread_ratio": 0.18, "loss": 0.75, "baseline_loss": 0.825, "verdict": "healthy"}
    collapsed = {"spread_ratio": 0.03, "loss": 0.825, "baseline_loss": 0.825, "verdict": "flatlined"}
    recovered, reason = judge(collapsed, slow)
    assert recovered and "rerun is healthy" in reason
    assert not judge(collapsed, dict(slow, verdict="at_risk"))[0]
    assert not judge(dict(collapsed, loss=0.74), slow)[0]  # no better than the run's own loss


def test_a_negative_loss_is_not_compared_with_the_baseline():
    nll_on_logits = {"spread_ratio": 0.1, "loss": -6.0, "baseline_loss": 0.69, "verdict": "at_risk"}
    recovered, _ = judge(nll_on_logits, {"spread_ratio": 0.8, "loss": 0.4, "baseline_loss": 0.69, "verdict": "healthy"})
    assert recovered


def test_a_window_of_one_target_is_a_collapse_that_only_mixed_windows_can_end():
    """Sorted by label and unshuffled: the constant predictor is exact in every window (baseline 0)."""
    one_class = {"spread_ratio": None, "loss": 0.085, "baseline_loss": -0.0, "verdict": "at_risk"}
    mixed = {"spread_ratio": 0.9, "loss": 0.6, "baseline_loss": 0.9, "verdict": "healthy"}
    recovered, reason = judge(one_class, mixed)
    assert recovered and "one target" in reason
    assert not judge(one_class, dict(one_class, loss=0.01))[0]                      # still one class per window
    assert not judge(one_class, dict(mixed, loss=0.88))[0]                          # mixed, but not learning
    assert "had not collapsed" in judge(dict(one_class, loss=0.0), mixed)[1]        # exact: nothing to recover


def test_class_weights_are_judged_on_the_spread_alone():
    one_class = {"spread_ratio": 0.0, "loss": 0.2856, "baseline_loss": 0.2851, "verdict": "flatlined"}
    weighted = {"spread_ratio": 0.9, "loss": 0.896, "baseline_loss": 0.2851, "verdict": "healthy"}  # weighted CE
    assert not judge(one_class, weighted)[0]                       # its loss is on another scale
    assert judge(one_class, weighted, compare_loss=False)[0]
    still_one_class = dict(weighted, spread_ratio=0.05, verdict="flatlined")
    assert not judge(one_class, still_one_class, compare_loss=False)[0]
    spec = plan({"cause": "loss.class_imbalance", "evidence": {"label_counts": {"0": 90, "1": 10}}})
    assert spec["compare_loss"] is False
    assert plan({"cause": "loss.shape_mismatch", "evidence": {}})["compare_loss"] is True


def test_plans_follow_the_evidence():
    lr = plan({"cause": "optim.lr_too_high", "evidence": {"lr": 1e-3, "update_ratio_peak": 0.05}})
    assert lr["params"]["lr"] == pytest.approx(1e-5)  # 1e-3 * 5e-4 / 0.05
    weights = plan({"cause": "loss.class_imbalance", "evidence": {"label_counts": {"0": 90, "1": 10}}})
    assert weights["params"]["weights"] == pytest.approx([100 / 180, 100 / 20])
    assert plan({"cause": "data.constant_labels", "evidence": {}}) is None  # no fix from outside the script
    assert plan({"cause": "loss.double_activation", "evidence": {}, "where": None}) is None


def test_candidates_skip_causes_without_a_fix_and_info_findings():
    report = {"findings": [
        {"code": "D006", "cause": "data.constant_labels", "severity": "error", "evidence": {}},
        {"code": "O004", "cause": "optim.frozen", "severity": "info", "evidence": {}},
        {"code": "L001", "cause": "loss.shape_mismatch", "severity": "error", "evidence": {}},
        {"code": "S001", "cause": None, "severity": "error", "evidence": {}}]}
    assert [f["code"] for f, _ in candidates(report, 2)] == ["L001"]


def _script(tiny_model_dir, fault, steps=60):
    return [sys.executable, str(SCRIPTS / "tiny_regression.py"), "--model", str(tiny_model_dir), "--fault", fault,
            "--steps", str(steps)]


def test_confirm_proves_the_reshape_fix(tmp_path, tiny_model_dir):
    # 120 steps: by then the fixed tiny model's loss is clearly below the constant predictor's (at 60 it is not yet)
    r = run_defib(tmp_path, "--confirm", command=_script(tiny_model_dir, "shape", steps=120))
    fixes = r.report["confirmed_fixes"]
    assert len(fixes) == 1, r
    fix = fixes[0]
    assert fix["cause"] == "loss.shape_mismatch" and fix["recovered"], fix
    assert fix["before"]["spread_ratio"] < 0.15 <= fix["after"]["spread_ratio"]
    assert fix["after"]["loss"] < 0.9 * fix["after"]["baseline_loss"]
    assert "confirmed" in r.stdout and "--confirm took" in r.stderr
    assert r.returncode == 1  # the run itself still flatlined: confirming a fix does not change the verdict


def test_confirm_does_not_claim_a_fix_that_leaves_the_collapse(tmp_path, tiny_model_dir):
    # two planted faults: with the reshape fixed the labels are still noise, so the predictions stay flat
    r = run_defib(tmp_path, "--confirm", "--confirm-runs", "1", command=_script(tiny_model_dir, "shape,noise"))
    fixes = r.report["confirmed_fixes"]
    assert len(fixes) == 1, r
    assert not fixes[0]["recovered"], fixes[0]
    assert fixes[0]["after"]["spread_ratio"] is None or fixes[0]["after"]["spread_ratio"] < 0.15
    assert "not confirmed" in r.stdout


# -- each fix acts at its interception point (in process, with defib's real hooks installed)

@pytest.fixture
def fixed():
    """Install defib's hooks with a given fix; yields a function that does it, removes them after."""
    from defib.evidence.hooks import install
    from defib.evidence.watch import Watcher
    from defib.fixes import build

    handles = []

    def attach(cause, **params):
        w = Watcher()
        w.fix = build({"cause": cause, "params": params})
        handles.append(install(w))
        return w

    yield attach
    for h in handles:
        h.remove()


def test_shuffle_fix_gives_the_loader_a_random_sampler(fixed):
    import torch.utils.data as tud

    fixed("data.unshuffled")
    loader = tud.DataLoader(list(range(10)), batch_size=2)  # shuffle defaults to False
    assert isinstance(loader.sampler, tud.RandomSampler)


def test_lr_fix_rescales_every_group_and_keeps_their_ratio(fixed):
    import torch

    fixed("optim.lr_too_high", lr=1e-5, from_lr=1e-3)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW([{"params": a.parameters(), "lr": 1e-3}, {"params": b.parameters(), "lr": 1e-4}])
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([1e-5, 1e-6])


def test_lr_fix_scales_the_built_lr_by_new_over_measured(fixed):
    """Measured during a warmup (5e-10 of a built 4e-8): the built lr is scaled, not replaced by the new value."""
    import torch

    fixed("optim.lr_too_low", lr=1e-6, from_lr=5e-10)
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=4e-8)
    assert opt.param_groups[0]["lr"] == pytest.approx(4e-8 * 2000)


def test_class_weight_fix_weights_cross_entropy(fixed):
    import torch
    import torch.nn.functional as F

    logits, labels = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1])
    plain = F.cross_entropy(logits, labels, weight=torch.tensor([1.0, 9.0]))
    fixed("loss.class_imbalance", weights=[1.0, 9.0])
    assert torch.equal(F.cross_entropy(logits, labels), plain)


def test_class_imbalance_fix_gives_multilabel_bce_a_pos_weight(fixed):
    import torch
    import torch.nn.functional as F

    spec = plan({"cause": "loss.class_imbalance", "evidence": {"label_pos_rate": [0.1, 0.25]}})
    assert spec["params"]["pos_weight"] == pytest.approx([9.0, 3.0])  # negatives / positives, per label
    logits, y = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    weighted = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor([9.0, 3.0]))
    fixed("loss.class_imbalance", pos_weight=[9.0, 3.0])
    assert torch.equal(F.binary_cross_entropy_with_logits(logits, y), weighted)


def test_standardise_fix_changes_only_regression_targets(fixed):
    import torch
    import torch.nn.functional as F

    pred, y = torch.zeros(4), torch.tensor([1.0, 2.0, 3.0, 4.0])
    fixed("data.target_scale", mean=2.5, std=2.0)
    assert F.mse_loss(pred, y).item() == pytest.approx(float(((y - 2.5) / 2.0).pow(2).mean()))


def test_mask_fix_passes_the_padding_mask_from_the_models_second_call(fixed, tiny_model_dir):
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(tiny_model_dir)).eval()  # eval: no dropout, outputs comparable
    ids = torch.tensor([[101, 7, 8, 102, 0, 0], [101, 9, 102, 0, 0, 0]])
    inverted = (ids == 0).long()
    with torch.no_grad():
        right = model(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
        wrong = model(input_ids=ids, attention_mask=inverted).last_hidden_state
        w = fixed("data.attention_mask", pad_token_id=0)
        first = model(input_ids=ids, attention_mask=inverted).last_hidden_state   # finds the model: unchanged
        second = model(input_ids=ids, attention_mask=inverted).last_hidden_state  # the fix passes the real mask
    assert torch.equal(first, wrong) and not torch.allclose(wrong, right)
    assert torch.equal(second, right)
    assert not w.s.internal_errors


def test_pretrained_fix_loads_the_checkpoint_into_a_model_built_from_its_config(fixed, tiny_model_dir):
    import torch
    from transformers import AutoConfig, AutoModel

    saved = AutoModel.from_pretrained(str(tiny_model_dir)).state_dict()
    torch.manual_seed(123)
    model = AutoModel.from_config(AutoConfig.from_pretrained(str(tiny_model_dir)))  # random weights
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(model.state_dict()[key], saved[key])
    fixed("model.not_pretrained")
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: after the step the weights are exactly the loaded ones
    out = model(input_ids=torch.tensor([[101, 7, 8, 102]])).last_hidden_state
    out.pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


@pytest.mark.parametrize("wrapped", [False, True], ids=["torch", "accelerate"])
def test_missing_params_fix_keeps_a_scheduler_built_before_it_working(fixed, tiny_model_dir, wrapped, request):
    """A scheduler made before the fix adds a group must schedule that group too, not raise (strict zip).

    ``wrapped``: the scheduler holds accelerate's optimizer wrapper, as under the transformers Trainer.
    """
    import torch
    from transformers import AutoModel, get_linear_schedule_with_warmup

    fixed("optim.missing_params")
    model = AutoModel.from_pretrained(str(tiny_model_dir))
    opt = torch.optim.AdamW(model.pooler.parameters(), lr=1e-3)  # the encoder left out
    if wrapped:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        Accelerator()  # the wrapper needs accelerate's process state; reset below for the tests after this one
        request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))
        from accelerate.optimizer import AcceleratedOptimizer

        opt = AcceleratedOptimizer(opt, device_placement=False)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=10)
    for _ in range(3):
        model(input_ids=torch.tensor([[101, 7, 8, 102]])).pooler_output.pow(2).mean().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    assert len(opt.param_groups) == 2
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    assert opt.param_groups[1]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 7 / 8)  # on schedule


def test_confirm_command_refuses_a_missing_or_foreign_report(tmp_path):
    r = run_defib(tmp_path, "confirm", str(tmp_path / "nope.json"), "--", sys.executable, "-c", "pass")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "no such report" in r.stderr, r
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    r = run_defib(tmp_path, "confirm", str(other), "--", sys.executable, "-c", "pass")
    assert r.returncode == 2 and "not a defib JSON report" in r.stderr, r


def test_confirm_command_on_a_healthy_report_reruns_nothing(tmp_path):
    healthy = tmp_path / "healthy.json"
    healthy.write_text('{"verdict": "healthy", "steps_observed": 60, "findings": [], "signals": {}}')
    r = run_defib(tmp_path, "confirm", str(healthy), "--", sys.executable, "-c", "raise SystemExit(3)")
    assert r.returncode == 1 and "no root cause with a fix" in r.stderr, r
    # options may follow the report (what one types), and the command keeps its own options after --
    out = tmp_path / "out.json"
    r = run_defib(tmp_path, "confirm", str(healthy), "--json", str(out), "--", sys.executable, "-c", "pass", "--json")
    assert r.returncode == 1 and json.loads(out.read_text())["confirmed_fixes"] == [], r


class _Pooled(__import__("torch").nn.Module):
    """A tiny sentence model the way users write one: an encoder, a pooling line, a linear head."""

    def __init__(self, path, pooling="cls", no_grad=False, head_std=None):
        import torch
        from transformers import AutoModel

        super().__init__()
        self.encoder = AutoModel.from_pretrained(str(path))
        self.fc = torch.nn.Linear(self.encoder.config.hidden_size, 2)
        if head_std is not None:
            torch.nn.init.normal_(self.fc.weight, std=head_std)
        self.pooling, self.no_grad = pooling, no_grad
        self.grad_mode_after_encoder = None

    def forward(self, ids):
        import torch

        with torch.set_grad_enabled(not self.no_grad and torch.is_grad_enabled()):
            out = self.encoder(input_ids=ids, output_hidden_states=True)
            self.grad_mode_after_encoder = torch.is_grad_enabled()
        vec = out.hidden_states[0][:, 0] if self.pooling == "embeddings" else out.last_hidden_state[:, 0]
        return self.fc(vec)


IDS = [[101, 7, 8, 9, 102], [101, 11, 12, 13, 102]]


def _steps(model, n, lr=0.0, opt=None):
    import torch

    opt = opt or torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(n):
        opt.zero_grad()
        model(torch.tensor(IDS)).pow(2).mean().backward()
        opt.step()
    return opt


def test_grad_fix_lets_the_gradient_past_a_no_grad_inside_the_training_forward(fixed, tiny_model_dir):
    import torch

    model = _Pooled(tiny_model_dir, no_grad=True).train()
    w = fixed("optim.detached")
    _steps(model, 2)  # the fix hooks in at the first step: the second backward reaches the encoder
    assert all(p.grad is not None for n, p in model.encoder.named_parameters() if not n.startswith("pooler"))
    assert model.grad_mode_after_encoder is True  # the user's no_grad block goes as a whole ...
    assert torch.is_grad_enabled()                # ... and its end restores the mode it found
    with torch.no_grad():                         # an evaluation under an outer no_grad stays without a graph
        assert not model(torch.tensor(IDS)).requires_grad
        assert model.grad_mode_after_encoder is False
    assert not w.s.internal_errors
    assert plan({"cause": "optim.detached", "evidence": {"groups_with_grad": ["head"]}}) is not None
    no_graph = {"groups_with_grad": [], "loss_without_graph": True}  # a NumPy loss: nothing to switch back on
    assert plan({"cause": "optim.detached", "evidence": no_graph}) is None


def test_pooling_fix_feeds_the_head_the_last_layers_cls_vector(fixed, tiny_model_dir):
    import torch

    model = _Pooled(tiny_model_dir, pooling="embeddings")
    fixed("model.pooling")
    _steps(model.train(), 1)  # lr 0: the weights stay; the fix hooks in at this step
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(IDS))
        right = model.fc(model.encoder(input_ids=torch.tensor(IDS)).last_hidden_state[:, 0])
        alone = model.fc(torch.zeros(2, model.fc.in_features))  # a head called without an encoder call: untouched
    assert torch.allclose(out, right)
    assert torch.equal(alone, model.fc.bias.expand(2, -1))
    assert plan({"cause": "model.pooling", "evidence": {"head_input_spread": 0.0007}}) is None  # never saw it vary


def test_head_fix_reinitialises_and_drops_the_first_steps_gradients(fixed, tiny_model_dir):
    """The first gradients came through the oversized head: kept, they would stay in Adam's second moment."""
    import torch

    model = _Pooled(tiny_model_dir, head_std=1.0).train()
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    fixed("model.bad_head_init")
    opt = _steps(model, 1, opt=torch.optim.AdamW(model.parameters(), lr=1e-3))
    assert model.fc.weight.std().item() == pytest.approx(0.02, rel=0.3) and not model.fc.bias.any()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in before.items())  # that step was skipped
    assert not opt.state  # Adam's statistics start with the next, sane gradients
    _steps(model, 1, opt=opt)
    assert opt.state


def _hand_written_steps(model, batches, loss_fn, steps=3):
    """A plain loop on a head the script calls, with its own loss arithmetic: what each step's loss saw."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    seen = []
    for x, y in batches[:steps]:
        pred = model(x)
        seen.append(pred.detach().clone())
        loss = loss_fn(pred, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seen


def test_standardise_fix_puts_a_hand_written_losses_predictions_on_the_targets_scale(fixed):
    """The targets are out of reach: from the step the loss is known to be hand-written, the head's one output
    per row is mapped to out * std + mean; an evaluation forward (no grad) keeps the model's own output."""
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(4, 1)
    batches = [(torch.randn(8, 4), torch.rand(8, 1) * 5) for _ in range(3)]
    fixed("data.target_scale", mean=2.5, std=2.0)
    seen = _hand_written_steps(head, batches, lambda p, y: ((p - y) ** 2).mean())
    # step 1: the loss is not known yet; from step 2 the outputs sit around the targets' mean
    assert seen[0].abs().mean() < 1.5 and (seen[1].mean() - 2.5).abs() < 1.5 and (seen[2].mean() - 2.5).abs() < 1.5
    with torch.no_grad():
        assert head(batches[0][0]).abs().mean() < 1.5


def test_reshape_fix_gives_a_hand_written_losses_predictions_the_targets_shape(fixed):
    import torch

    class Flat(torch.nn.Module):  # a regressor that flattens its [B, 1] output to [B]
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.proj(x).view(-1)

    batches = [(torch.randn(8, 4), torch.rand(8, 1)) for _ in range(3)]
    fixed("loss.shape_mismatch", input_shape=[8], target_shape=[8, 1])
    seen = _hand_written_steps(Flat(), batches, lambda p, y: (p - y).abs().mean())
    assert [tuple(s.shape) for s in seen] == [(8,), (8, 1), (8, 1)]


def test_reshape_fix_leaves_shapes_that_differ_otherwise(fixed):
    import torch

    head = torch.nn.Linear(4, 1)
    batches = [(torch.randn(8, 4), torch.rand(8, 2)) for _ in range(3)]
    fixed("loss.shape_mismatch", input_shape=[8, 1], target_shape=[8, 2])  # a real mismatch, no trailing 1 to add
    seen = _hand_written_steps(head, batches, lambda p, y: (p - y).abs().mean())
    assert [tuple(s.shape) for s in seen] == [(8, 1)] * 3


def test_grad_fix_keeps_the_graph_through_what_the_no_grad_helper_does_after_the_encoder(fixed, tiny_model_dir):
    """A ``@torch.no_grad()`` feature helper that mixes layers after the encoder returns: autograd switched on
    for the encoder alone would leave the mix without a graph, and the encoder still without gradients."""
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(tiny_model_dir)).train()
    head = torch.nn.Linear(encoder.config.hidden_size, 1)

    @torch.no_grad()
    def features(ids):  # shared with the evaluation, hence the decorator (the planted bug)
        out = encoder(input_ids=ids, output_hidden_states=True)
        return torch.stack(out.hidden_states[-2:]).mean(0).mean(1)

    w = fixed("optim.detached")
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.0)
    for _ in range(2):
        opt.zero_grad()
        head(features(torch.tensor(IDS))).pow(2).mean().backward()
        opt.step()
    assert encoder.embeddings.word_embeddings.weight.grad is not None
    assert torch.is_grad_enabled()
    encoder.eval()  # the same helper in evaluation keeps its no_grad
    assert not features(torch.tensor(IDS)).requires_grad
    assert not w.s.internal_errors


def test_pooling_fix_reaches_a_head_kept_outside_the_encoder(fixed, tiny_model_dir):
    """The head is its own module, called on hidden_states[0][:, 0] picked in a helper: the fix finds it as the head
    the script calls at top level, and feeds it the last layer's [CLS] vector."""
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(tiny_model_dir))
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(encoder.config.hidden_size, 3))

    def features(ids):
        return encoder(input_ids=ids, output_hidden_states=True).hidden_states[0][:, 0]  # planted: the embeddings

    w = fixed("model.pooling")
    opt = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.0)
    encoder.train(), head.train()
    for _ in range(2):
        opt.zero_grad()
        head(features(torch.tensor(IDS))).pow(2).mean().backward()
        opt.step()
    assert w.head_outside() is head
    encoder.eval(), head.eval()
    with torch.no_grad():
        out = head(features(torch.tensor(IDS)))
        right = head(encoder(input_ids=torch.tensor(IDS)).last_hidden_state[:, 0])
        alone = head(torch.zeros(2, encoder.config.hidden_size))  # no encoder call before it: its own input
    assert torch.allclose(out, right)
    assert torch.equal(alone, head[1].bias.expand(2, -1))
    assert not w.s.internal_errors


def test_missing_params_fix_fills_the_users_empty_group_with_its_lr(fixed, tiny_model_dir):
    """A head group selected by a name that matches nothing (``classifier.`` for ``fc``): the head joins that group,
    at the lr the user gave it, with the scheduler's entry it already has."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    model = _Pooled(tiny_model_dir).train()
    fixed("optim.missing_params")
    opt = torch.optim.AdamW([
        {"params": [p for n, p in model.named_parameters() if n.startswith("encoder.")], "lr": 1e-5},
        {"params": [p for n, p in model.named_parameters() if n.startswith("classifier.")], "lr": 1e-3},
    ])
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=10)
    for _ in range(2):
        _steps(model, 1, opt=opt)
        sched.step()
    assert len(opt.param_groups) == 2
    assert {id(p) for p in opt.param_groups[1]["params"]} == {id(p) for p in model.fc.parameters()}
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3 * 8 / 10)  # the user's head lr, on schedule
    assert all(p in opt.state for p in model.fc.parameters())  # and it steps


def test_missing_params_fix_adds_a_group_when_no_group_is_empty(fixed, tiny_model_dir):
    import torch

    model = _Pooled(tiny_model_dir).train()
    fixed("optim.missing_params")
    opt = torch.optim.AdamW(model.encoder.parameters(), lr=1e-5)
    _steps(model, 1, opt=opt)
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["lr"] == pytest.approx(1e-5)


def test_output_range_fix_scales_the_targets_of_a_bound_the_loss_owns(fixed):
    """A cosine regressed onto 0-5 scores: no activation to drop; the targets the loss receives go to 0..1."""
    import torch
    import torch.nn.functional as F

    evidence = {"activation": "cosine similarity", "range": [-1.0, 1.0], "target_range": [0.0, 5.0],
                "bound_of": "loss", "loss_fn": "mse_loss"}
    spec = plan({"cause": "model.output_range", "evidence": evidence, "where": {"file": "t.py", "line": 3}})
    assert spec["params"]["to"] == [0.0, 1.0] and "0..5 onto 0..1" in spec["description"]
    signed = plan({"cause": "model.output_range", "evidence": dict(evidence, target_range=[-5.0, 5.0])})
    assert signed["params"]["to"] == [-1.0, 1.0]  # signed targets use the whole range
    assert plan({"cause": "model.output_range", "evidence": dict(evidence, loss_fn=None)}) is None  # no call to reach
    cos, y = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.0, 2.5, 6.0])
    w = fixed("model.output_range", **spec["params"])
    assert F.mse_loss(cos, y).item() == pytest.approx(float((cos - torch.tensor([0.0, 0.5, 1.0])).pow(2).mean()))
    assert torch.equal(F.l1_loss(cos, y), (cos - y).abs().mean())  # another loss keeps its targets
    assert not w.fix.skip_activation("t.py", 3)


def test_output_range_fix_still_drops_a_heads_own_activation():
    from defib.fixes import build

    evidence = {"activation": "Sigmoid", "range": [0.0, 1.0], "target_range": [0.0, 5.0], "bound_of": "activation",
                "loss_fn": "mse_loss"}
    spec = plan({"cause": "model.output_range", "evidence": evidence, "where": {"file": "t.py", "line": 3}})
    assert spec["params"] == {"file": "t.py", "line": 3} and spec["description"].startswith("drop the activation")
    fix = build(spec)
    assert fix.skip_activation("t.py", 3) and not fix.skip_activation("t.py", 4)
    assert plan({"cause": "model.output_range", "evidence": {}, "where": {"file": "t.py", "line": 3}})["params"] \
        == {"file": "t.py", "line": 3}  # a report from before bound_of: the old fix


def test_a_classifier_whose_probabilities_learn_before_its_argmax_moves_is_recovered():
    """The healthy twin of a truncation case after 100 steps: cross-entropy 0.878 of the prior's, the argmax still
    mostly the majority class (predicted-class entropy 0.089 of the labels'). The faulty run predicted one class."""
    one_class = {"spread_ratio": 0.0, "loss": 0.9013, "baseline_loss": 0.906, "verdict": "flatlined"}
    twin = {"spread_ratio": 0.0888, "loss": 0.7955, "baseline_loss": 0.906, "verdict": "healthy"}
    recovered, reason = judge(one_class, twin)
    assert recovered and "still narrow" in reason
    assert not judge(one_class, dict(twin, spread_ratio=0.0))[0]        # one class for every input
    assert not judge(one_class, dict(twin, verdict="at_risk"))[0]       # its own diagnosis is not content
    assert not judge(one_class, dict(twin, loss=0.83))[0]               # 0.916 of the prior's: not learning
    assert not judge(one_class, twin, compare_loss=False)[0]            # class weights: the spread alone decides
    assert not judge(one_class, one_class)[0]
