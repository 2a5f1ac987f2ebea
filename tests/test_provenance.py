"""``where`` follows a keyword argument to the line that set its value."""

from __future__ import annotations

import textwrap

from defib.evidence.provenance import argument_line, label_line, origin_line, receiver_line

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

    def train(scores, device):
        y = torch.tensor(scores)
        y = y.to(device)
        for idx, batch in batches:
            loss = huber(model(x), y[idx], 1.0)
            loss = mse(model(x), batch[1])
''')


def test_label_line_finds_where_targets_are_made(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(LABELS)
    f = str(path)
    assert label_line(f, 14) == 9     # loss_fn(pred, target) <- target = batch.pop("target") <- batch["target"] = ...
    assert label_line(f, 15) == 4     # trainer.train(): the Trainer reads "labels"
    assert label_line(f, 16) is None  # y comes from nowhere this file shows
    assert label_line(f, 17) == 9
    assert label_line(f, 23) == 20    # y[idx] <- y = y.to(device), which only moves it <- y = torch.tensor(scores)
    assert label_line(f, 24) is None  # a field of a tuple batch: nothing this file shows made it


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


COLLATED_MASK = textwrap.dedent('''\
    class Data:
        def collate(self, batch):
            ids, labels = zip(*batch)
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), 0)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for row, x in enumerate(ids):
                input_ids[row, :len(x)] = torch.tensor(x)
                mask[row, len(x):] = 1
            return {"input_ids": input_ids, "attention_mask": mask, "labels": torch.tensor(labels)}

    class Module:
        def training_step(self, batch, i):
            logits = self(batch["input_ids"], batch["attention_mask"])
            out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].to(self.device))
            return self(batch["input_ids"])
''')


def test_a_mask_read_by_key_is_followed_to_its_last_write_where_the_batch_is_built(tmp_path):
    """``batch["attention_mask"]``, by position or keyword, comes from the one dict that fills that key; its value
    ``mask`` was last written in place (``mask[row, len(x):] = 1``), the line that inverted it."""
    path = tmp_path / "train.py"
    path.write_text(COLLATED_MASK)
    f = str(path)
    assert origin_line(f, 14, "attention_mask") == 9     # positional batch["attention_mask"]
    assert origin_line(f, 15, "attention_mask") == 9     # keyword, moved with .to(device)
    assert origin_line(f, 16, "attention_mask") == 16    # no mask passed: the call


def test_a_mask_passed_by_position_under_its_own_name_is_followed_to_the_collate_that_built_it(tmp_path):
    """``encoder(input_ids, attention_mask)`` in a loop over ``for input_ids, attention_mask, labels in loader``:
    the one assignment of ``attention_mask`` in the file, in the script's collate, is the line that made it; a
    positional argument under another name stays at the call."""
    path = tmp_path / "train.py"
    path.write_text(textwrap.dedent('''\
        def collate(batch):
            input_ids = pad(batch)
            attention_mask = (input_ids == 0).long()
            return input_ids, attention_mask

        def train(loader, encoder, mask_fn):
            for input_ids, attention_mask in loader:
                encoder(input_ids, attention_mask)
                encoder(input_ids, mask_fn(input_ids))
    '''))
    f = str(path)
    assert origin_line(f, 8, "attention_mask") == 3
    assert origin_line(f, 9, "attention_mask") == 9


def test_a_mask_key_filled_in_two_places_or_by_the_tokenizer_stays_at_the_call(tmp_path):
    two = tmp_path / "two.py"
    two.write_text(COLLATED_MASK + textwrap.dedent('''\
        def eval_collate(rows):
            return {"attention_mask": torch.ones(len(rows), 8)}
    '''))
    assert origin_line(str(two), 14, "attention_mask") == 14
    tokenized = tmp_path / "tok.py"
    tokenized.write_text(textwrap.dedent('''\
        def step(model, tok, texts):
            enc = tok(texts, padding=True, return_tensors="pt")
            return model(enc["input_ids"], enc["attention_mask"])
    '''))
    assert origin_line(str(tokenized), 3, "attention_mask") == 3


PICKED_IN_A_FUNCTION = textwrap.dedent('''\
    def features(encoder, enc):
        out = encoder(**enc, output_hidden_states=True)
        layer = out.hidden_states[0]
        return layer[:, 0]

    def pooled(encoder, enc):
        h = encoder(**enc).last_hidden_state
        vec = h[:, 0]
        return vec

    def two_ways(encoder, enc, first):
        if first:
            return encoder(**enc).last_hidden_state[:, 0]
        return encoder(**enc).pooler_output

    def step(head, encoder, enc, y, out):
        a = F.cross_entropy(head(features(encoder, enc)), y)
        b = head(pooled(encoder, enc))
        c = head(two_ways(encoder, enc, True))
        d = head(pool(encoder, enc))
        e = head(pooled(out.hidden_states[0], enc))
''')


def test_a_head_fed_by_a_function_of_the_file_points_into_it(tmp_path):
    """``head(features(encoder, enc))``: the vector is picked inside ``features``, at what it returns."""
    path = tmp_path / "train.py"
    path.write_text(PICKED_IN_A_FUNCTION)
    f = str(path)
    assert argument_line(f, 17, set()) == 4    # return layer[:, 0]
    assert argument_line(f, 18, set()) == 8    # return vec -> vec = h[:, 0]
    assert argument_line(f, 19, set()) == 19   # two returns: which one is unknown
    assert argument_line(f, 20, set()) == 20   # pool is not in this file
    assert argument_line(f, 21, set()) == 21   # the call itself picks (out.hidden_states[0]): the call


SCORE_PAIRS = textwrap.dedent('''\
    def load_examples(split):
        rows = load_stsb(split)
        return [(a, b, s) for a, b, s in zip(rows.sentence1, rows.sentence2, rows.score)]

    def main(embed):
        train = load_examples("train")
        for k in range(0, len(train), 16):
            batch = train[k:k + 16]
            a, b, gold = zip(*batch)
            cos = F.cosine_similarity(embed(a), embed(b))
            loss = F.mse_loss(cos, torch.tensor(gold, dtype=torch.float32))
            scaled = torch.tensor(gold) * 5
            other = F.mse_loss(cos, scaled)
        for xa, xb, y in batches(train):
            loss = F.mse_loss(cos, y)

    def rescaled(cos):
        gold = torch.tensor(load_examples("dev"))
        gold /= 5
        loss = F.mse_loss(cos, gold)
''')


def test_targets_from_no_key_are_followed_to_the_function_that_built_them(tmp_path):
    """``torch.tensor(gold)`` <- ``a, b, gold = zip(*batch)`` <- ``batch = train[k:k + 16]`` <-
    ``train = load_examples(...)``: the return line of ``load_examples`` made the scores."""
    path = tmp_path / "train.py"
    path.write_text(SCORE_PAIRS)
    f = str(path)
    assert label_line(f, 11) == 3
    # an expression of them on the way (* 5) is not followed to the function: the line that made the variable
    assert label_line(f, 13) == 12
    assert label_line(f, 15) is None   # a loop variable of a function from elsewhere
    assert label_line(f, 20) == 19     # changed in place (gold /= 5) after it was built: that write
