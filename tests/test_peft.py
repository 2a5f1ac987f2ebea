"""Models wrapped by ``peft.get_peft_model``: seen through the wrapper, and PEFT's ways to freeze what must learn.

Real LoRA on the tiny BERT, real loops of 60 steps under ``defib.watch``.
Planted: a head PEFT froze (no ``task_type``, no ``modules_to_save``), adapters
on a module the loss never uses, a LoRA scale and a learning rate that leave
the adapters at zero. Near-misses: LoRA with ``task_type``, LoRA with the head
in ``modules_to_save`` on a model of the user's own, the transformers Trainer.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rules.helpers import BertRegressor, assert_where, find, sentences, tokenizer, watch
from support import assert_healthy
from test_confirm import fixed  # noqa: F401 - the fixture: defib's hooks installed with a given fix

from defib.evidence import adapters as A
from defib.fixes import plan

peft = pytest.importorskip("peft")
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402

ROWS = sentences(960, seed=3)
BATCH = 16
STEPS = len(ROWS) // BATCH  # 60: past the flatline rule's grace period
LORA = dict(r=4, lora_alpha=8, target_modules=["query", "value"])


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _classifier(model_dir):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=1)


def _train(model, model_dir, lr=1e-3, own=False):
    """60 AdamW steps of MSE on the trainable parameters (``own``: a BertRegressor's (ids, mask) forward)."""
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    tok = tokenizer(str(model_dir))
    for i in range(0, len(ROWS), BATCH):
        enc = tok([t for t, _ in ROWS[i:i + BATCH]], padding=True, truncation=True, max_length=32, return_tensors="pt")
        y = torch.tensor([s for _, s in ROWS[i:i + BATCH]])
        pred = model(enc["input_ids"], enc["attention_mask"]) if own else model(**enc).logits.squeeze(-1)
        loss = F.mse_loss(pred, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _codes(d):
    return [(f.code, f.message) for f in d.findings]


# ---------------------------------------------------------------- seen through the wrapper
def test_healthy_lora_is_healthy_and_measured_through_the_wrapper(tiny_model_dir):
    with watch() as w:
        model = get_peft_model(_classifier(tiny_model_dir), LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
        _train(model, tiny_model_dir)
    assert_healthy(w.diagnosis, STEPS)
    assert not w.diagnosis.findings, _codes(w.diagnosis)  # not even a note on the frozen base
    o, m = w.watcher.s.optim, w.watcher.s.model
    assert m.adapter_method == "LORA" and len(m.adapter_modules) == 4 and m.lora_scale == 2.0
    # the head that trains is PEFT's modules_to_save copy; its frozen original_module is not the head
    assert m.head_params == ["base_model.model.classifier.modules_to_save.default.weight",
                             "base_model.model.classifier.modules_to_save.default.bias"]
    assert len(m.head_input_spread) > 0  # the head's input is read on the copy that runs
    # the adapters' update is their layers' change: B starts at exactly 0, yet every sampled step has a sane ratio
    assert o.adapter_groups == ["layer.0", "layer.1"]
    ratios = [v for g in o.adapter_groups for _, v in o.update_ratio[g].pairs()]
    assert ratios and all(1e-4 < v < 1e-2 for v in ratios), ratios


def test_lora_with_the_head_in_modules_to_save_on_an_own_model_is_healthy(tiny_model_dir):
    with watch() as w:
        config = LoraConfig(modules_to_save=["head"], **LORA)
        model = get_peft_model(BertRegressor(tiny_model_dir), config)
        _train(model, tiny_model_dir, own=True)
    assert_healthy(w.diagnosis, STEPS)
    assert not w.diagnosis.findings, _codes(w.diagnosis)
    assert w.watcher.s.optim.adapters_idle == []


def test_lora_under_the_trainer_is_healthy(tiny_model_dir, tmp_path):
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from defib.integrations.hf import DefibCallback

    tok = tokenizer(str(tiny_model_dir))
    data = [dict(tok(text, truncation=True, max_length=32), labels=score) for text, score in ROWS]
    model = get_peft_model(_classifier(tiny_model_dir), LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=BATCH, max_steps=STEPS,
                             learning_rate=1e-3, report_to=[], save_strategy="no", logging_strategy="no",
                             disable_tqdm=True, use_cpu=True, seed=0)
    callback = DefibCallback(report=False)
    Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tok),
            callbacks=[callback]).train()
    assert_healthy(callback.diagnosis, STEPS)
    assert not callback.diagnosis.findings, _codes(callback.diagnosis)


def test_update_norms_match_the_dense_change_of_the_layer():
    """||s (B'A' - BA)|| from 2r x 2r products equals the norm of the (out, in) matrix it stands for."""
    layer = get_peft_model(torch.nn.Sequential(torch.nn.Linear(6, 5)),
                           LoraConfig(r=3, lora_alpha=6, target_modules=["0"])).base_model.model[0]
    (f,) = A.lora_factors(layer)
    before = A.copy_factors(f)
    with torch.no_grad():
        f.b.normal_()  # B leaves zero
        f.a.add_(0.01 * torch.randn_like(f.a))
    dense = 2.0 * (f.b @ f.a - before[1] @ before[0]).detach()  # scale lora_alpha / r = 2
    base_norm, delta = A.update_norms(f, before).tolist()
    assert delta == pytest.approx(float(dense.norm()), rel=1e-4) and delta > 0
    assert base_norm == pytest.approx(float(layer.base_layer.weight.norm()))


# ---------------------------------------------------------------- PEFT's ways to freeze what must learn
def test_head_frozen_by_peft_is_named_at_the_lora_config(tiny_model_dir):
    with watch() as w:
        config = LoraConfig(**LORA)  # planted
        model = get_peft_model(_classifier(tiny_model_dir), config)
        _train(model, tiny_model_dir)
    f = find(w.diagnosis, "O004")
    assert f is not None, _codes(w.diagnosis)
    assert w.diagnosis.findings[0].cause == "optim.frozen", _codes(w.diagnosis)
    assert f.evidence["head_frozen"] == ["base_model.model.classifier.weight", "base_model.model.classifier.bias"]
    assert f.evidence["head_modules"] == ["classifier"] and f.evidence["adapter_method"] == "LORA"
    assert "modules_to_save" in f.fix
    assert_where(f, test_head_frozen_by_peft_is_named_at_the_lora_config)


def test_adapters_on_a_module_the_loss_never_uses_are_named(tiny_model_dir):
    with watch() as w:
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["pooler.dense"], modules_to_save=["head"])  # planted
        model = get_peft_model(BertRegressor(tiny_model_dir), config)  # its head reads last_hidden_state[:, 0]
        _train(model, tiny_model_dir, own=True)
    f = find(w.diagnosis, "O004")
    assert f is not None, _codes(w.diagnosis)
    assert w.diagnosis.findings[0].cause == "optim.frozen", _codes(w.diagnosis)
    assert f.evidence["adapters_idle"] == ["base_model.model.encoder.pooler.dense"]
    assert f.evidence["groups_with_grad"] == ["head"]
    assert find(w.diagnosis, "O006") is None  # not a cut graph: nothing to remove from the forward
    assert_where(f, test_adapters_on_a_module_the_loss_never_uses_are_named)


def test_a_tiny_lora_scale_is_named_as_what_keeps_the_adapters_at_zero(tiny_model_dir):
    with watch() as w:
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=1e-4, target_modules=["query", "value"])  # planted
        model = get_peft_model(_classifier(tiny_model_dir), config)
        _train(model, tiny_model_dir)
    f = find(w.diagnosis, "O002")
    assert f is not None, _codes(w.diagnosis)
    assert f.cause == "optim.lr_too_low" and f.evidence["lever"] == "lora_alpha"
    assert f.evidence["lora_scale"] == pytest.approx(2.5e-5) and f.evidence["update_ratio_median"] < 1e-6
    assert_where(f, test_a_tiny_lora_scale_is_named_as_what_keeps_the_adapters_at_zero)
    spec = plan({"cause": f.cause, "evidence": f.evidence})
    assert spec["params"]["from_lora_scale"] == pytest.approx(2.5e-5) and 0.1 <= spec["params"]["lora_scale"] <= 4


def test_a_learning_rate_that_leaves_the_adapters_at_zero_is_named(tiny_model_dir):
    with watch() as w:
        model = get_peft_model(_classifier(tiny_model_dir), LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
        model.train()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)  # planted
        tok = tokenizer(str(tiny_model_dir))
        for i in range(0, len(ROWS), BATCH):
            enc = tok([t for t, _ in ROWS[i:i + BATCH]], padding=True, return_tensors="pt")
            loss = F.mse_loss(model(**enc).logits.squeeze(-1), torch.tensor([s for _, s in ROWS[i:i + BATCH]]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    f = find(w.diagnosis, "O002")
    assert f is not None, _codes(w.diagnosis)
    assert f.evidence["lever"] == "lr" and f.evidence["adapter_groups"] == ["layer.0", "layer.1"]
    assert_where(f, test_a_learning_rate_that_leaves_the_adapters_at_zero_is_named)
    assert plan({"cause": f.cause, "evidence": f.evidence})["params"]["lr"] > 1e-6


# ---------------------------------------------------------------- the confirmation rerun's fixes
def test_frozen_head_fix_unfreezes_only_the_head_of_a_peft_model(fixed, tiny_model_dir):  # noqa: F811
    spec = plan({"cause": "optim.frozen", "evidence": {"head_modules": ["classifier"]}})
    assert spec["params"] == {"head_only": True}
    fixed("optim.frozen", **spec["params"])
    model = get_peft_model(_classifier(tiny_model_dir), LoraConfig(**LORA))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    enc = tokenizer(str(tiny_model_dir))(["a good movie", "bad"], padding=True, return_tensors="pt")
    model(**enc).logits.pow(2).mean().backward()
    opt.step()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"base_model.model.classifier.weight", "base_model.model.classifier.bias"} <= trainable
    assert all("lora_" in n or "classifier" in n for n in trainable), trainable  # the base stays frozen
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(model.base_model.model.classifier.weight) in held


def test_lora_scale_fix_sets_every_adapted_layers_scale_and_keeps_the_lr(fixed, tiny_model_dir):  # noqa: F811
    fixed("optim.lr_too_low", lora_scale=2.0, from_lora_scale=2.5e-5)
    model = get_peft_model(_classifier(tiny_model_dir),
                           LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=1e-4, target_modules=["query"]))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    assert opt.param_groups[0]["lr"] == 1e-3
    enc = tokenizer(str(tiny_model_dir))(["a good movie"], return_tensors="pt")
    model(**enc).logits.pow(2).mean().backward()
    opt.step()
    assert [f.scale for f in A.lora_factors(model)] == [2.0, 2.0]


def test_lora_under_lightning_is_healthy(tiny_model_dir):
    pl = pytest.importorskip("lightning.pytorch")
    from torch.utils.data import DataLoader

    from defib.integrations.lightning import DefibCallback

    tok = tokenizer(str(tiny_model_dir))

    def collate(batch):
        texts, ys = zip(*batch)
        return tok(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt"), torch.tensor(ys)

    class LoraRegressor(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = get_peft_model(_classifier(tiny_model_dir), LoraConfig(task_type=TaskType.SEQ_CLS, **LORA))
            self.model.train()  # from_pretrained returns eval mode, and Lightning 2.6 keeps submodules as they are

        def training_step(self, batch, _):
            enc, y = batch
            return F.mse_loss(self.model(**enc).logits.squeeze(-1), y)

        def configure_optimizers(self):
            return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-3)

    callback = DefibCallback(report=False)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(LoraRegressor(), DataLoader(ROWS, batch_size=BATCH, collate_fn=collate))
    assert_healthy(callback.diagnosis, STEPS)
    assert not callback.diagnosis.findings, _codes(callback.diagnosis)


@pytest.mark.parametrize("targets", [["pooler.dense"], ["query", "value", "pooler.dense"]])
def test_adapters_only_on_the_pooler_are_a_frozen_encoder(tiny_model_dir, targets):
    """``target_modules=["pooler.dense"]`` on a classifier that reads the pooler: its adapter learns, no layer can.
    Near-miss: the pooler adapted beside the attention layers."""
    with watch() as w:
        config = LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                            target_modules=targets)  # planted
        model = get_peft_model(_classifier(tiny_model_dir), config)
        _train(model, tiny_model_dir)
    d = w.diagnosis
    assert find(d, "O001") is None, _codes(d)  # the pooler's steps are a head's, not the encoder's
    f = find(d, "O004")
    if targets != ["pooler.dense"]:
        assert f is None and d.verdict == "healthy", _codes(d)
        return
    assert f is not None and f.evidence["adapter_groups"] == ["pooler"], _codes(d)
    assert d.findings[0].cause == "optim.frozen", _codes(d)
    assert_where(f, test_adapters_only_on_the_pooler_are_a_frozen_encoder)
