"""``defib run`` on a script that crashes in the embedding (ids past its table): the cause survives the crash.

The model is called by keyword, so the crash reaches defib's global forward
hook without the batch (torch drops the kwargs on the way out of a forward that
raised); the embedding's own ids name the cause, with the tokenizer's line.
"""

from __future__ import annotations

import sys
import textwrap


def test_ids_past_the_embedding_table_crash_and_the_report_names_the_tokenizer(tiny_model_dir, defib_run, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import torch, torch.nn.functional as F
        from torch import nn
        from transformers import AutoModel, AutoTokenizer
        encoder = AutoModel.from_pretrained({str(tiny_model_dir)!r})
        encoder.resize_token_embeddings(1000)
        head = nn.Linear(encoder.config.hidden_size, 1)
        tok = AutoTokenizer.from_pretrained({str(tiny_model_dir)!r})
        opt = torch.optim.AdamW(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
        enc = tok(["the movie was good", "an awful plot"] * 4, padding=True, return_tensors="pt")
        out = encoder(**enc)
        loss = F.mse_loss(head(out.last_hidden_state[:, 0]).squeeze(-1), torch.randn(8))
        loss.backward()
        opt.step()
    """))
    r = defib_run(command=[sys.executable, str(script)])
    assert r.report is not None and r.report["script_exit"] != 0
    f = next((f for f in r.report["findings"] if f["code"] == "D009"), None)
    assert f is not None, r.report["findings"]
    assert f["evidence"]["embedding_rows"] == 1000 and f["evidence"]["max_id"] >= 1000
    assert f["where"]["line"] == 8 and "AutoTokenizer.from_pretrained" in f["where"]["code"]
