"""``where`` follows a keyword argument to the line that set its value."""

from __future__ import annotations

import textwrap

from defib.evidence.provenance import label_line, origin_line, receiver_line

SCRIPT = textwrap.dedent('''\
    import argparse
    from dataclasses import dataclass

    @dataclass
    class Config:
        lr: float = 4e-8
        max_length: int = 8

    parser = argparse.ArgumentParser()
    parser.add_argument("--warmup-steps", type=int, default=100)
    args = parser.parse_args()

    def collate(items, tok):
        ids = tok(items)
        mask = (ids == tok.pad_token_id).long()
        return ids, mask

    def train(model, cfg, loader, tok):
        opt = AdamW(model.parameters(),
                    lr=cfg.lr)
        sched = get_schedule(opt, num_warmup_steps=args.warmup_steps)
        for ids, mask in loader:
            out = model(input_ids=ids, attention_mask=mask)
        enc = tok(texts, truncation=True, max_length=cfg.max_length)
        enc = tok(texts, truncation=True, max_length=cfg.max_length * 2)
        opt2 = AdamW(model.parameters(), lr=3e-5)
''')


def test_follows_values_to_their_origin(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    f = str(path)
    assert origin_line(f, 19, "lr") == 6                          # cfg.lr -> the dataclass field
    assert origin_line(f, 19, "lr", value=4e-8) == 6               # ... which is the value the run used
    assert origin_line(f, 21, "num_warmup_steps") == 10            # args.warmup_steps -> add_argument default
    assert origin_line(f, 23, "attention_mask") == 15              # mask -> the one assignment in the file
    assert origin_line(f, 24, "max_length") == 7
    assert origin_line(f, 27, "lr") == 27                          # a literal: its own line


BACKWARDS = textwrap.dedent('''\
    def step(model, x, y, scaler, accelerator):
        loss = torch.tensor(mse(model(x).detach().numpy(), y), requires_grad=True)
        loss.backward()
        total = loss * 2
        scaler.scale(total).backward()
        accelerator.backward(total)
        model(x).sum().backward()
''')


def test_receiver_line_finds_the_tensor_backward_was_called_on(tmp_path):
    path = tmp_path / "step.py"
    path.write_text(BACKWARDS)
    f = str(path)
    assert receiver_line(f, 3, "backward") == 2      # loss.backward() -> loss = torch.tensor(...)
    assert receiver_line(f, 5, "backward") == 4      # scaler.scale(total).backward()
    assert receiver_line(f, 6, "backward") == 4      # accelerator.backward(total)
    assert receiver_line(f, 7, "backward") is None   # no variable to follow
    assert receiver_line(f, 1, "backward") is None   # no backward call on that line


def test_stays_at_the_call_when_unsure(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    f = str(path)
    assert origin_line(f, 19, "lr", value=1e-3) == 20              # the run used another lr (command line): the call
    assert origin_line(f, 21, "num_warmup_steps", value=5) == 21
    assert origin_line(f, 25, "max_length") == 25                  # an expression: the call
    assert origin_line(f, 19, "weight_decay") == 19                # no such keyword
    assert origin_line(str(tmp_path / "missing.py"), 3, "lr") == 3


LABELS = textwrap.dedent('''\
    class Pairs(Dataset):
        def __getitem__(self, idx):
            item = {k: v[idx] for k, v in self.enc.items()}
            item["labels"] = float(self.scores[idx]) * 20
            return item

    def collate(rows):
        batch = tok([r[0] for r in rows])
        batch["target"] = torch.tensor([r[1] // 5 for r in rows])
        return batch

    def step(model, batch):
        target = batch.pop("target")
        loss = loss_fn(model(**batch), target.float())
        trainer.train()
        other = mse(pred, y)
        again = mse(pred, torch.as_tensor(batch["target"]).view(-1))
''')


def test_label_line_finds_where_targets_are_made(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(LABELS)
    f = str(path)
    assert label_line(f, 14) == 9     # loss_fn(pred, target) <- target = batch.pop("target") <- batch["target"] = ...
    assert label_line(f, 15) == 4     # trainer.train(): the Trainer reads "labels"
    assert label_line(f, 16) is None  # y comes from nowhere this file shows
    assert label_line(f, 17) == 9


def test_a_setting_not_passed_at_the_call_is_found_where_the_file_sets_it(tmp_path):
    """HfArgumentParser builds TrainingArguments inside the library: the line is the set_defaults keyword."""
    f = tmp_path / "train.py"
    f.write_text("from transformers import HfArgumentParser, TrainingArguments\n"
                 "parser = HfArgumentParser((TrainingArguments,))\n"
                 "parser.set_defaults(\n"
                 "    learning_rate=3e-5,\n"
                 "    warmup_steps=500,\n"
                 ")\n"
                 "(args,) = parser.parse_args_into_dataclasses()\n")
    assert origin_line(str(f), 7, "warmup_steps", 500) == 5
    assert origin_line(str(f), 7, "warmup_steps", 100) == 7  # another value: not the run's, stay at the call
    assert origin_line(str(f), 7, "warmup_steps") == 7       # the run's value unknown: stay at the call
