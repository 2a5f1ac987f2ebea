"""``defib train --task token_classification`` and ``defib predict`` on a tagger, on the tiny BERT.

The data: sentences of filler words with names and places, each word tagged
by what it is (B-PER / B-LOC / O), in a CoNLL file and as JSON Lines token
lists. Long words split into several word pieces, so the alignment (the tag
on the first piece, -100 on the others) is exercised. Also: the span F1, the
summary's share of non-O words with its collapse warning (and the near-miss
that stays silent), and the one-line errors for tag files that are not
token-level.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
from support import run_defib

NAMES, PLACES = ["alice", "bob", "carol"], ["paris", "london", "berlin"]
FILL = ["the", "movie", "was", "a", "plot", "and", "it", "went", "to", "see", "with", "unbelievableness"]


def _tagged(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = [rng.choice(FILL + NAMES + PLACES) for _ in range(rng.randint(4, 9))]
        rows.append((words, ["B-PER" if w in NAMES else "B-LOC" if w in PLACES else "O" for w in words]))
    return rows


def _conll(path: Path, rows) -> Path:
    lines = ["-DOCSTART- O", ""]
    for words, tags in rows:
        lines += [f"{w}\t{t}" for w, t in zip(words, tags)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _jsonl(path: Path, rows, **extra) -> Path:
    path.write_text("".join(json.dumps({"tokens": w, "ner_tags": t, **extra}) + "\n" for w, t in rows),
                    encoding="utf-8")
    return path


def _cli(*args: str):
    from typer.testing import CliRunner

    from defib.cli import app

    return CliRunner().invoke(app, list(args))


def test_train_a_tagger_on_conll_then_predict_a_tag_per_word(tiny_model_dir, tmp_path):
    rows = _tagged(240)
    data = _conll(tmp_path / "train.conll", rows)
    out = tmp_path / "tagger"
    r = run_defib(tmp_path, "train", str(data), "--task", "token_classification", "--model", str(tiny_model_dir),
                  "--out", str(out), "--epochs", "3", "--lr", "3e-3", "--batch-size", "16", "--no-progress")
    assert r.returncode in (0, 1), r
    assert "defib train: token_classification" in r.stdout and "first word piece" in r.stdout, r.stdout
    assert "non-O words (dev truth)" in r.stdout and "entity_f1" in r.stdout, r.stdout
    meta = json.loads((out / "defib_train.json").read_text())
    assert meta["labels"]["task"] == "token_classification" and meta["loss"] == "ce"
    assert meta["labels"]["names"] == ["B-LOC", "B-PER", "O"] and meta["labels"]["outside"] == "O"
    m = meta["dev_metrics"]
    assert 0 < m["true_non_o_share"] < 0.6 and m["token_accuracy"] > 0.8, m
    assert m["pred_non_o_share"] > 0.5 * m["true_non_o_share"] and m["entity_f1"] > 0.5, m  # learned, not all O
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]

    preds = tmp_path / "tags.csv"
    p = run_defib(tmp_path, "predict", str(out), str(data), "--out", str(preds))
    assert p.returncode == 0, p
    with open(preds, newline="", encoding="utf-8") as fh:
        got = list(csv.DictReader(fh))
    assert list(got[0]) == ["row", "word", "token", "prediction"]
    assert len(got) == sum(len(w) for w, _ in rows)  # a line per word, not per word piece
    assert [g["token"] for g in got[:len(rows[0][0])]] == rows[0][0]
    assert {g["prediction"] for g in got} <= {"O", "B-PER", "B-LOC"}
    truth = [t for _, tags in rows for t in tags]
    assert sum(g["prediction"] == t for g, t in zip(got, truth)) / len(truth) > 0.8


def test_train_on_jsonl_token_lists_infers_the_task_and_predicts_from_tokens_alone(tiny_model_dir, tmp_path):
    data = _jsonl(tmp_path / "train.jsonl", _tagged(60))
    out = tmp_path / "tagger"
    r = run_defib(tmp_path, "train", str(data), "--text", "tokens", "--label", "ner_tags", "--model",
                  str(tiny_model_dir), "--out", str(out), "--max-steps", "3", "--no-progress")
    assert r.returncode in (0, 1), r
    assert "token_classification" in r.stdout and "non-O words" in r.stdout, r.stdout
    unlabelled = tmp_path / "new.jsonl"
    unlabelled.write_text(json.dumps({"tokens": ["bob", "went", "to", "unbelievableness"]}) + "\n", encoding="utf-8")
    p = run_defib(tmp_path, "predict", str(out), str(unlabelled), "--out", str(tmp_path / "p.csv"))
    assert p.returncode == 0, p
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "row,word,token,prediction" and len(lines) == 5 and lines[4].startswith("1,4,unbelievableness,")


def test_each_words_tag_goes_to_its_first_word_piece_only(tiny_model_dir):
    import numpy as np
    from transformers import AutoTokenizer

    from defib.train.tokens import align, encode_words

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = [["bob", "unbelievableness", "paris"], ["the", "counterrevolutionaries"]]
    enc = encode_words(tok, words, 64)
    labels = align(enc, [np.array([1, 2, 0]), np.array([2, 1])])
    pieces = tok.convert_ids_to_tokens(enc["input_ids"][0])
    assert pieces[0] == "[CLS]" and pieces[1] == "bob" and pieces[2].startswith("un") and pieces[3].startswith("##")
    assert labels[0][:3] == [-100, 1, 2]
    assert all(x == -100 for x in labels[0][3:pieces.index("paris")])  # the later pieces of the long word
    assert labels[0][pieces.index("paris")] == 0 and labels[0][-1] == -100  # [SEP]
    assert [x for x in labels[1] if x != -100] == [2, 1]  # one label per word, in word order
    # truncation cuts words off: they get no label, and the words that fit keep theirs
    short = encode_words(tok, [["bob", "unbelievableness", "paris"]], 4)
    assert [x for x in align(short, [np.array([1, 2, 0])])[0] if x != -100] == [1, 2]


def test_entity_spans_and_the_all_o_collapse_in_the_metrics():
    from defib.train.metrics import entity_spans, tokens

    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC"], "O") == [(0, 2, "PER"), (3, 4, "LOC")]
    assert entity_spans(["I-PER", "I-LOC", "S-PER", "S-PER"], "O") == [(0, 1, "PER"), (1, 2, "LOC"), (2, 3, "PER"),
                                                                       (3, 4, "PER")]
    assert entity_spans(["B-ORG", "E-ORG", "I-ORG"], "O") == [(0, 2, "ORG"), (2, 3, "ORG")]
    assert entity_spans(["PER", "PER", "O", "LOC"], "O") == [(0, 2, "PER"), (3, 4, "LOC")]  # IO tags
    true = [["B-PER", "I-PER", "O", "O", "O"], ["O", "B-LOC", "O", "O", "O"]]
    collapsed = tokens([["O"] * 5, ["O"] * 5], true, "O")
    assert collapsed["token_accuracy"] == 0.7 and collapsed["entity_f1"] == 0.0
    assert collapsed["pred_non_o_share"] == 0.0 and collapsed["true_non_o_share"] == 0.3
    half = tokens([["B-PER", "I-PER", "O", "O", "O"], ["O", "B-PER", "O", "O", "O"]], true, "O")
    assert half["entity_precision"] == 0.5 and half["entity_recall"] == 0.5 and half["entity_f1"] == 0.5
    partial = tokens([["B-PER", "O", "O", "O", "O"], true[1]], true, "O")  # a span cut short is a miss
    assert partial["entity_recall"] == 0.5 and partial["entity_precision"] == 0.5


def test_the_summary_warns_when_nearly_every_word_is_tagged_o_and_not_otherwise():
    from rich.console import Console

    from defib.train.pipeline import TrainResult
    from defib.train.summary import final_table, outside_collapse_warning

    def result(pred_share: float) -> TrainResult:
        metrics = {"entity_f1": 0.0 if pred_share < 0.05 else 0.6, "token_accuracy": 0.88,
                   "pred_non_o_share": pred_share, "true_non_o_share": 0.12}
        return TrainResult(out=Path("m"), task="token_classification", loss="ce", metrics=metrics, wall_s=1.0,
                           train_s=1.0, samples_per_s=1.0, epochs_run=1.0, best_step=None)

    warning = outside_collapse_warning(result(0.0))
    assert warning is not None and "0.0% of the dev words" in warning and "12.0%" in warning
    assert "--loss focal" in warning
    assert outside_collapse_warning(result(0.10)) is None  # fewer entities than the truth, but tagging
    console = Console(record=True, width=300)
    final_table(result(0.0), console)
    text = console.export_text()
    assert "non-O words (dev truth)" in text and "0.0% (12.0%)" in text and "calls nearly every word O" in text


def _one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.startswith("defib: error: ") and "\n" not in err, err
    for text in expected:
        assert text in err, err


@pytest.mark.parametrize("case, expected", [
    ("sentence_labels", ["needs a list of tokens (--text) and a list of tags (--label)"]),
    ("one_tag_per_row", ["row 1", "not a list of tags (one per token)"]),
    ("misaligned", ["2 rows have a tag list not as long as their token list", "row 3 (", "D111"]),
    ("text_pair", ["--text-pair", "cannot pair"]),
])
def test_tag_files_that_are_not_token_level_are_one_line_errors(tiny_model_dir, tmp_path, case, expected):
    args = ["--text", "tokens", "--label", "ner_tags"]
    rows = _tagged(20)
    if case == "sentence_labels":
        data = tmp_path / "cls.csv"
        data.write_text("tokens,ner_tags\n" + "".join(f"{' '.join(w)},{t[0]}\n" for w, t in rows), encoding="utf-8")
        args += ["--task", "token_classification"]
    elif case == "one_tag_per_row":
        data = tmp_path / "rows.jsonl"
        data.write_text("".join(json.dumps({"tokens": w, "ner_tags": t[0]}) + "\n" for w, t in rows),
                        encoding="utf-8")
    elif case == "misaligned":
        for i in (2, 7):
            rows[i] = (rows[i][0], rows[i][1] + ["O"])
        data = _jsonl(tmp_path / "bad.jsonl", rows)
    else:
        data = _jsonl(tmp_path / "pair.jsonl", rows, other="text")
        args += ["--text-pair", "other"]
    out = tmp_path / "out"
    _one_line_error(_cli("train", str(data), *args, "--model", str(tiny_model_dir), "--out", str(out)), *expected)
    assert not out.exists()
