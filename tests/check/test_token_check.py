"""``defib check`` on token-level label files (NER, tagging): CoNLL text, and rows of token and tag lists.

Each finding has a planted fault and a near-miss that stays silent: tags
dominated by O (D107 over tokens) against balanced tags; sentences longer than
max_length in word pieces though not in words (D101) against sentences that
fit; rows whose tag list is longer than their tokens (D111) against aligned
rows; a single tag everywhere (D104).
"""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
from checkrun import defib_check

WORDS = ["Peter", "Blackburn", "went", "to", "Paris", "with", "friends", "from", "the", "EU", "on", "Monday"]
TAGS = ["O", "B-PER", "I-PER", "B-LOC", "B-ORG"]


def sentences(n: int, *, length: int = 8, tags: list[str] | None = None, seed: int = 0) -> list[tuple[list, list]]:
    """``n`` distinct sentences of ``length`` words, tagged from ``tags`` in turn (default: mostly O)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(length - 1)] + [f"w{i}"]
        marks = [tags[(i + j) % len(tags)] for j in range(length)] if tags else \
            ["B-PER" if j == 0 else "O" for j in range(length)]
        out.append((words, marks))
    return out


def write_conll(path, rows, sep: str = "\t"):
    lines = ["-DOCSTART- -X- -X- O", ""]
    for words, marks in rows:
        lines += [f"{w}{sep}NNP{sep}B-NP{sep}{t}" for w, t in zip(words, marks)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def write_jsonl(path, rows, text: str = "tokens", label: str = "ner_tags"):
    path.write_text("".join(json.dumps({text: w, label: t}) + "\n" for w, t in rows), encoding="utf-8")
    return path


def check(path, model, *extra, json_path):
    columns = [] if str(path).endswith((".conll", ".txt")) else ["--text", "tokens", "--label", "ner_tags"]
    r = defib_check(path, *columns, "--model", model, *extra, json_path=json_path)
    assert r.code in (0, 1) and r.report is not None, r
    return r.report


def codes(report) -> dict[str, dict]:
    return {f["code"]: f for f in report["findings"]}


def test_conll_jsonl_and_parquet_give_the_same_token_check(tmp_path, tiny_model_dir):
    rows = sentences(30, tags=TAGS)
    conll = write_conll(tmp_path / "data.conll", rows[:15], sep="\t")
    with open(conll, "a", encoding="utf-8") as fh:  # space-separated sentences too
        fh.write("\n" + "\n".join("\n".join(f"{w} NNP {t}" for w, t in zip(*r)) + "\n" for r in rows[15:]))
    jsonl = write_jsonl(tmp_path / "data.jsonl", rows)
    parquet = tmp_path / "data.parquet"
    pq.write_table(pa.table({"tokens": [w for w, _ in rows], "ner_tags": [t for _, t in rows]}), parquet)
    got = {}
    for path in (conll, jsonl, parquet):
        c = check(path, tiny_model_dir, json_path=tmp_path / f"{path.suffix}.json")["check"]
        got[path.suffix] = (c["rows"], c["task"], c["labels"], c["token_lengths"]["counts"])
        assert c["task_inferred"] and "one per token" in c["task_reason"]
    rows_, task, labels, _ = got[".conll"]
    assert rows_ == 30 and task == "token_classification"
    assert labels == {"kind": "token_classification", "counts": {t: 48 for t in TAGS}, "tags": 240,
                      "majority_share": 0.2, "misaligned_rows": 0}
    assert got[".jsonl"] == got[".conll"] == got[".parquet"]


def test_a_txt_file_is_read_as_conll_under_task_token(tmp_path, tiny_model_dir):
    path = write_conll(tmp_path / "train.txt", sentences(5, tags=TAGS), sep=" ")
    report = check(path, tiny_model_dir, "--task", "token_classification", json_path=tmp_path / "r.json")
    assert report["check"]["rows"] == 5 and report["task"] == "token_classification"
    assert not report["check"]["task_inferred"]


def test_tags_dominated_by_o_warn_over_tokens(tmp_path, tiny_model_dir):
    path = write_conll(tmp_path / "data.conll", sentences(40))
    f = codes(check(path, tiny_model_dir, json_path=tmp_path / "r.json")).get("D107")
    assert f is not None and f["cause"] == "loss.class_imbalance", f
    assert f["evidence"]["tag_counts"] == {"O": 280, "B-PER": 40}
    assert f["evidence"]["majority_tag"] == "O" and f["evidence"]["majority_share"] == 0.875
    assert "tokens" in f["message"] and "ignore_index=-100" in f["fix"]


def test_balanced_tags_stay_silent(tmp_path, tiny_model_dir):
    path = write_conll(tmp_path / "data.conll", sentences(40, tags=TAGS))
    report = check(path, tiny_model_dir, json_path=tmp_path / "r.json")
    assert not set(codes(report)) & {"D101", "D104", "D107", "D111"}, report["findings"]
    assert report["verdict"] == "healthy"


def test_sentences_longer_than_max_length_in_word_pieces_warn(tmp_path, tiny_model_dir):
    """20 words fit in 32 positions; their word pieces do not: the check counts pieces, as training will."""
    long_words = ["unbelievableness", "counterrevolutionaries", "hyperparameterisation", "antidisestablishment"]
    rows = [([long_words[(i + j) % 4] for j in range(19)] + [f"w{i}"], ["O"] * 19 + ["B-PER"]) for i in range(40)]
    path = write_jsonl(tmp_path / "data.jsonl", rows)
    f = codes(check(path, tiny_model_dir, "--max-length", "32", json_path=tmp_path / "r.json")).get("D101")
    assert f is not None and f["evidence"]["rows_truncated"] == 40, f
    assert "is_split_into_words=True" in f["fix"]


def test_sentences_that_fit_stay_silent(tmp_path, tiny_model_dir):
    path = write_jsonl(tmp_path / "data.jsonl", sentences(40, tags=TAGS))
    report = check(path, tiny_model_dir, "--max-length", "32", json_path=tmp_path / "r.json")
    assert "D101" not in codes(report) and report["check"]["rows_truncated"] == 0


def test_tags_longer_than_their_tokens_name_the_rows(tmp_path, tiny_model_dir):
    rows = sentences(40, tags=TAGS)
    for i in (3, 13, 23):
        rows[i] = (rows[i][0], rows[i][1] + ["O"])  # a tag per word piece, or a dropped token
    report = check(write_jsonl(tmp_path / "data.jsonl", rows), tiny_model_dir, json_path=tmp_path / "r.json")
    f = codes(report).get("D111")
    assert f is not None and f["cause"] == "data.label_misalignment" and f["severity"] == "error", report["findings"]
    assert f["evidence"]["example_rows"] == [4, 14, 24] and f["evidence"]["misaligned_rows"] == 3
    assert f["evidence"]["examples"][0] == {"row": 4, "tokens": 8, "tags": 9}
    assert report["check"]["labels"]["misaligned_rows"] == 3


def test_one_tag_everywhere_is_constant(tmp_path, tiny_model_dir):
    rows = [(w, ["O"] * len(w)) for w, _ in sentences(10)]
    f = codes(check(write_conll(tmp_path / "data.conll", rows), tiny_model_dir, json_path=tmp_path / "r.json")).get("D104")
    assert f is not None and f["message"].startswith("All 80 tokens (10 rows) have tag 'O'"), f


def test_whole_number_tags_count_as_class_ids(tmp_path, tiny_model_dir):
    rows = [(w, [TAGS.index(t) for t in marks]) for w, marks in sentences(40, tags=TAGS)]
    report = check(write_jsonl(tmp_path / "data.jsonl", rows), tiny_model_dir, json_path=tmp_path / "r.json")
    assert report["task"] == "token_classification"
    assert report["check"]["labels"]["counts"] == {str(k): 64 for k in range(5)}


def test_a_sentence_repeated_with_other_tags_names_the_sequences_not_their_hashes(tmp_path, tiny_model_dir):
    rows = sentences(60, tags=TAGS)
    words, marks = rows[0]
    rows += [(words, ["O"] * len(words))] * 2  # the first sentence again, tagged otherwise
    f = codes(check(write_jsonl(tmp_path / "t.jsonl", rows), tiny_model_dir, json_path=tmp_path / "r.json")).get("D108")
    assert f is not None and "row 1: 'tag sequence A'" in f["message"] and "'tag sequence B'" in f["message"], f
