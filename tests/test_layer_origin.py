"""``where`` for a pooling that reads the wrong hidden layer: the line that chose the layer, followed statically."""

from __future__ import annotations

import textwrap

import pytest

from defib.evidence.layer_origin import layer_where
from defib.signals.common import Where

SCRIPT = textwrap.dedent('''\
    import argparse
    from dataclasses import dataclass

    import torch

    POOL_LAYER = 0

    @dataclass
    class Config:
        pool_layer: int = 0

    parser = argparse.ArgumentParser()
    parser.add_argument("--cls-layer", type=int, default=0)
    args = parser.parse_args()

    class LayerCLS(torch.nn.Module):
        def __init__(self, layer, scale=1.0):
            super().__init__()
            self.layer = layer

        def forward(self, features):
            hidden = features["all_layer_embeddings"][self.layer]
            features["sentence_embedding"] = hidden[:, 0]
            return features

    class DefaultLayer(torch.nn.Module):
        def __init__(self, layer=0):
            super().__init__()
            self.layer = layer

        def forward(self, out):
            return out.hidden_states[self.layer][:, 0]

    def from_config(encoder, enc, cfg):
        out = encoder(**enc, output_hidden_states=True)
        return out.hidden_states[cfg.pool_layer][:, 0]

    def from_args(encoder, enc):
        layer = args.cls_layer
        out = encoder(**enc, output_hidden_states=True)
        pooled = out.hidden_states[layer][:, 0]
        return pooled

    def literal(encoder, enc):
        out = encoder(**enc, output_hidden_states=True)
        first = out.hidden_states[0]
        return first[:, 0]

    def last_layer(encoder, enc):
        out = encoder(**enc, output_hidden_states=True)
        return out.last_hidden_state[:, 0]

    def stacked(encoder, enc):
        out = encoder(**enc, output_hidden_states=True)
        return torch.stack(out.hidden_states[-4:]).mean(0)[:, 0]

    def pick(out, layer):
        return out.hidden_states[layer][:, 0]

    model = [LayerCLS(POOL_LAYER), DefaultLayer()]
''')


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    lines = SCRIPT.splitlines()
    return str(path), lambda text: next(i + 1 for i, line in enumerate(lines) if text in line)


def test_a_layer_index_is_followed_to_the_line_that_chose_it(script):
    path, at = script
    cases = {
        # attribute set from the constructor's argument, the class built once with a module constant
        'features["sentence_embedding"] = hidden[:, 0]': "POOL_LAYER = 0",
        # the constructor's default, the class built without it
        "return out.hidden_states[self.layer][:, 0]": "def __init__(self, layer=0)",
        # a config field, an argparse default through a local variable
        "return out.hidden_states[cfg.pool_layer][:, 0]": "pool_layer: int = 0",
        "return pooled": 'add_argument("--cls-layer"',
        # a literal on the statement before the pooling line
        "return first[:, 0]": "first = out.hidden_states[0]",
    }
    for pooling, chosen in cases.items():
        found = layer_where(Where(path, at(pooling), ""))
        assert found is not None and found.line == at(chosen), (pooling, found)


def test_no_layer_index_or_the_pooling_line_itself_stays_put(script):
    """Near-misses: no list of hidden states read, a slice of it, an index that is a function's parameter (its
    callers are not followed)."""
    path, at = script
    for pooling in ("return out.last_hidden_state[:, 0]", "return torch.stack(out.hidden_states[-4:]).mean(0)[:, 0]",
                    "return out.hidden_states[layer][:, 0]"):
        assert layer_where(Where(path, at(pooling), "")) is None, pooling


def test_an_ambiguous_hop_is_not_taken(tmp_path):
    """Two instances of the class with different layers: which one pooled is unknown statically."""
    path = tmp_path / "train.py"
    path.write_text(SCRIPT.replace("model = [LayerCLS(POOL_LAYER), DefaultLayer()]",
                                   "model = [LayerCLS(POOL_LAYER), LayerCLS(-1)]"))
    line = SCRIPT.splitlines().index('        features["sentence_embedding"] = hidden[:, 0]') + 1
    assert layer_where(Where(str(path), line, "")) is None
