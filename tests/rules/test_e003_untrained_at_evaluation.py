"""E003: after training, the script evaluates a rebuilt copy whose head never received the trained weights.

Planted: an encoder (embeddings + mean) and a head kept outside it train together; both are saved, then
rebuilt, and only the encoder's weights are loaded before the evaluation under ``no_grad`` in eval mode.
Near-misses: the same loading the head too (by ``load_state_dict`` and by ``.data.copy_``, which leaves the
version counter alone), and evaluating the trained objects themselves.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import pytest
from helpers import assert_where, batches, find, sentences, tokenizer, watch, word_data
from torch import nn

from defib.rules.base import Severity


class Encoder(nn.Module):
    def __init__(self, vocab: int = 32, dim: int = 16):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, dim)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids).mean(1)


def train(ids: torch.Tensor, score: torch.Tensor) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    encoder, head = Encoder(), nn.Linear(16, 1)
    opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-2)
    for x, y in batches(ids, score, size=16):
        loss = F.mse_loss(head(encoder(x)).squeeze(-1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return encoder, head, opt


def evaluate(encoder: nn.Module, head: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    encoder.eval(), head.eval()
    with torch.no_grad():
        return head(encoder(ids)).squeeze(-1)


def saved(encoder: nn.Module, head: nn.Module) -> tuple[dict, dict]:
    return ({k: v.clone() for k, v in encoder.state_dict().items()},
            {k: v.clone() for k, v in head.state_dict().items()})


def test_rebuilt_head_never_loaded_fires():
    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        enc_state, _ = saved(encoder, head)
        encoder = Encoder()
        encoder.load_state_dict(enc_state)
        head = nn.Linear(16, 1)  # planted
        evaluate(encoder, head, ids)
    f = find(w.diagnosis, "E003")
    assert f is not None, w.diagnosis.findings
    assert f.cause == "eval.wrong_weights" and f.severity == Severity.ERROR
    assert f.evidence["module"] == "Linear" and f.evidence["params"] == 17
    assert_where(f, test_rebuilt_head_never_loaded_fires)


def test_rebuilt_head_loaded_is_silent():
    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        enc_state, head_state = saved(encoder, head)
        encoder, head = Encoder(), nn.Linear(16, 1)
        encoder.load_state_dict(enc_state)
        head.load_state_dict(head_state)
        evaluate(encoder, head, ids)
    assert find(w.diagnosis, "E003") is None, w.diagnosis.findings


def test_rebuilt_head_copied_through_data_is_silent():
    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        trained_head = head
        head = nn.Linear(16, 1)
        head.weight.data.copy_(trained_head.weight.data)  # no version bump: the values say it was loaded
        head.bias.data.copy_(trained_head.bias.data)
        evaluate(encoder, head, ids)
    assert head.weight._version == 1  # the near-miss the values must catch
    assert find(w.diagnosis, "E003") is None, w.diagnosis.findings


def test_trained_objects_evaluated_are_silent():
    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        evaluate(encoder, head, ids)
    assert find(w.diagnosis, "E003") is None, w.diagnosis.findings


def test_rebuilt_head_initialised_by_the_user_and_never_loaded_fires():
    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        head = nn.Linear(16, 1)  # planted
        nn.init.trunc_normal_(head.weight, std=0.02)  # several in-place writes, all of them initialisation
        nn.init.zeros_(head.bias)
        evaluate(encoder, head, ids)
    f = find(w.diagnosis, "E003")
    assert f is not None, w.diagnosis.findings
    assert_where(f, test_rebuilt_head_initialised_by_the_user_and_never_loaded_fires)


def test_rebuilt_head_loaded_from_an_earlier_checkpoint_is_silent():
    ids, score = word_data(160, seed=3)
    torch.manual_seed(1)
    early = {k: v + 0.5 for k, v in nn.Linear(16, 1).state_dict().items()}  # weights unlike the final ones
    with watch() as w:
        encoder, head, opt = train(ids, score)
        copied, assigned = nn.Linear(16, 1), nn.Linear(16, 1)
        copied.load_state_dict(early)
        assigned.load_state_dict({k: v.clone() for k, v in early.items()}, assign=True)
        evaluate(encoder, copied, ids)
        evaluate(encoder, assigned, ids)
    assert not torch.equal(assigned.weight, head.weight)  # only the counters can tell these were loaded
    assert find(w.diagnosis, "E003") is None, w.diagnosis.findings


class LoraEncoder(nn.Module):
    """The tiny BERT with LoRA on query/value (fresh, or the adapter saved in ``adapter``), mean-pooled."""

    def __init__(self, model_dir, adapter=None):
        super().__init__()
        from peft import LoraConfig, PeftModel, get_peft_model
        from transformers import AutoModel

        bert = AutoModel.from_pretrained(str(model_dir))
        self.dim = bert.config.hidden_size
        self.bert = (get_peft_model(bert, LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
                     if adapter is None else PeftModel.from_pretrained(bert, str(adapter)))

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


def lora_then_rebuild(model_dir, folder, load_head: bool) -> tuple[nn.Module, nn.Module]:
    """Train a LoRA encoder and an outside head 12 steps, save both, rebuild them for the evaluation."""
    torch.manual_seed(0)
    tok = tokenizer(str(model_dir))
    rows = sentences(192, seed=5)
    encoder = LoraEncoder(model_dir)
    head = nn.Linear(encoder.dim, 2)
    opt = torch.optim.AdamW([p for p in encoder.parameters() if p.requires_grad] + list(head.parameters()), lr=1e-3)
    for i in range(0, len(rows), 16):
        enc = tok([t for t, _ in rows[i:i + 16]], padding=True, return_tensors="pt")
        y = torch.tensor([int(s > 0) for _, s in rows[i:i + 16]])
        loss = F.cross_entropy(head(encoder(enc["input_ids"], enc["attention_mask"])), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    encoder.bert.save_pretrained(str(folder))
    torch.save(head.state_dict(), folder / "head.pt")
    encoder = LoraEncoder(model_dir, adapter=folder)
    head = nn.Linear(encoder.dim, 2)  # planted
    if load_head:
        head.load_state_dict(torch.load(folder / "head.pt"))
    encoder.eval(), head.eval()
    enc = tok([t for t, _ in rows[:32]], padding=True, return_tensors="pt")
    with torch.no_grad():
        head(encoder(enc["input_ids"], enc["attention_mask"]))
    return encoder, head


def test_lora_encoder_reloaded_with_a_head_never_loaded_fires(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    with watch() as w:
        lora_then_rebuild(tiny_model_dir, tmp_path, load_head=False)
    f = find(w.diagnosis, "E003")
    assert f is not None, w.diagnosis.findings
    assert f.evidence["module"] == "Linear"
    assert_where(f, lora_then_rebuild)


def test_lora_encoder_reloaded_with_its_head_loaded_is_silent(tiny_model_dir, tmp_path):
    pytest.importorskip("peft")
    with watch() as w:
        lora_then_rebuild(tiny_model_dir, tmp_path, load_head=True)
    assert find(w.diagnosis, "E003") is None, w.diagnosis.findings


def test_the_evaluation_forward_reads_no_tensor_on_the_host():
    from test_watch_cost import HostReads

    ids, score = word_data(160, seed=3)
    with watch() as w:
        encoder, head, opt = train(ids, score)
        head = nn.Linear(16, 1)
        with HostReads() as reads:
            evaluate(encoder, head, ids)
    assert reads.calls == []  # versions and shapes only; the values are compared when the watcher flushes
    assert find(w.diagnosis, "E003") is not None, w.diagnosis.findings
