"""``defib check`` on the real STS-B, Rotten Tomatoes and WNUT-16 files (slow: real tokenizer, ~20k rows).

What it finds there (also in bench/preflight/README.md): Rotten Tomatoes is
grouped by label in file order and its "plot" class is 6.8x rarer than
"fresh"; STS-B is clean at max_length 128 and cut short at 16; its dev split is
ordered by source, so its scores are autocorrelated in file order (0.22).
"""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import defib
from defib.demos.data import RT_CLASSES, load_rotten_tomatoes, load_stsb, model_path, wnut16_conll

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stsb_tsv(tmp_path_factory):
    s = load_stsb("train")
    path = tmp_path_factory.mktemp("stsb") / "stsb-train.tsv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["sentence1", "sentence2", "score"])
        w.writerows(zip(s.sentence1, s.sentence2, s.score))
    return path


def codes(d) -> dict[str, str]:
    return {f.code: str(f.severity) for f in d.findings}


def test_wnut16_is_read_as_conll_tags_dominated_by_o():
    """The packaged WNUT-16 file through the one reader: its 1,496 entities in 46,469 tokens, O on 94.7%."""
    d = defib.check_file(wnut16_conll(), text="tokens", label="tags", model=model_path())
    assert d.task == "token_classification" and d.extra["check"]["rows"] == 2394
    labels = d.extra["check"]["labels"]
    assert labels["tags"] == 46469 and labels["majority_share"] == 0.947 and labels["misaligned_rows"] == 0
    assert sum(n for tag, n in labels["counts"].items() if tag.startswith("B-")) == 1496
    assert codes(d).get("D107") == "warning" and "D111" not in codes(d)


def test_rotten_tomatoes(tmp_path):
    rt = load_rotten_tomatoes()
    path = tmp_path / "rt.parquet"
    pq.write_table(pa.table({"text": rt.text, "label": [RT_CLASSES[i] for i in rt.label]}), path)
    d = defib.check_file(path, text="text", label="label", model=model_path())
    assert d.verdict == "at_risk" and d.task == "classification"
    found = codes(d)
    assert found.get("D103") == "warning" and found.get("D107") == "warning"
    assert "error" not in found.values()
    assert d.extra["check"]["labels"]["counts"] == {"fresh": 7403, "rotten": 5405, "plot": 1083}


def test_stsb_pairs_are_clean_at_128(stsb_tsv):
    d = defib.check_file(stsb_tsv, text="sentence1", text_pair="sentence2", label="score", model=model_path(),
                         max_length=128)
    assert d.task == "regression" and d.verdict == "healthy", d.findings
    assert d.extra["check"]["rows"] == 5749 and d.extra["check"]["rows_truncated"] == 0


def test_stsb_pairs_cut_at_16(stsb_tsv):
    d = defib.check_file(stsb_tsv, text="sentence1", text_pair="sentence2", label="score", model=model_path(),
                         max_length=16)
    f = next(f for f in d.findings if f.code == "D101")
    assert f.evidence["truncated_share"] > 0.8


def test_stsb_dev_is_ordered_by_source(tmp_path):
    s = load_stsb("dev")
    d = defib.check_data(s.sentence1, s.score, text_pairs=s.sentence2, model=model_path(), max_length=128)
    f = next(f for f in d.findings if f.code == "D103")
    assert f.evidence["statistic"] == "lag-1 autocorrelation" and 0.2 < f.evidence["observed"] < 0.3
