"""The shared thresholds: paired rules agree, and nothing reads a number out of a rule module.

A run-time rule and its data-check or probe twin (and the plots and
``--confirm`` that draw or judge by the same line) must keep one value each;
these checks fail when someone edits one copy. The import checks keep the
layering honest: the report and the fixes take numbers from
``defib.rules.thresholds`` only, and no rule area imports another's modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import defib
from defib.rules import thresholds as t
from defib.rules.base import all_rules

SRC = Path(defib.__file__).parent

# (constant, [(rule code, class attribute), ...]): every attribute must equal the constant
SHARED = [
    ("FLAT_SPREAD", [("S001", "max_spread")]),
    ("NOT_LEARNING", [("S001", "loss_margin"), ("L004", "loss_margin")]),
    ("GRACE_STEPS", [("S001", "min_step"), ("L004", "min_step")]),
    ("MIN_TOKENIZED_ROWS", [("D001", "min_rows"), ("D101", "min_rows")]),
    ("COLLISIONS_WARN", [("D001", "warn_collisions"), ("D101", "warn_collisions")]),
    ("COLLISIONS_ERROR", [("D001", "error_collisions"), ("D101", "error_collisions")]),
    ("CONSTANT_TARGET_SHARE", [("D006", "max_mode_share"), ("D104", "dominant_share")]),
    ("TARGET_SCALE", [("D008", "max_scale"), ("D106", "max_scale")]),
    ("RANDOM_ENCODER_LAYERNORMS", [("M001", "min_default_share"), ("M102", "min_default_share"),
                                   ("M103", "max_default_layernorms"), ("D201", "max_default_layernorms")]),
    ("CONSTANT_OUTPUT_SPREAD", [("S101", "max_spread"), ("D201", "min_output_spread")]),
    ("MIN_TOKEN_SPREAD", [("M004", "min_token_spread"), ("M103", "min_token_spread")]),
    ("MIN_TRAINABLE", [("O004", "min_trainable"), ("O101", "min_trainable")]),
    ("HEALTHY_UPDATE", [("O001", "healthy_update"), ("O002", "healthy_update")]),
    ("LR_TOO_HIGH_UPDATE", [("O001", "max_ratio"), ("L005", "max_update")]),
    ("LR_TOO_LOW_UPDATE", [("O002", "min_ratio")]),
    ("LOSS_SCALE", [("L005", "max_factor"), ("O001", "loss_scale"), ("O002", "loss_scale")]),
]


@pytest.mark.parametrize("name,uses", SHARED, ids=[name for name, _ in SHARED])
def test_paired_rules_use_the_shared_value(name, uses):
    rules = all_rules()
    value = getattr(t, name)
    for code, attr in uses:
        assert getattr(rules[code], attr) == value, f"{code}.{attr} differs from thresholds.{name}"


def test_values_unchanged():
    """The numbers the rules used before they were gathered here: moving them must not move them."""
    assert (t.FLAT_SPREAD, t.NOT_LEARNING, t.GRACE_STEPS) == (0.15, 0.9, 30)
    assert (t.MIN_TOKENIZED_ROWS, t.COLLISIONS_WARN, t.COLLISIONS_ERROR) == (32, 0.02, 0.20)
    assert (t.CONSTANT_TARGET_SHARE, t.TARGET_SCALE, t.IGNORE_INDEX) == (0.9, 10.0, -100)
    assert (t.RANDOM_ENCODER_LAYERNORMS, t.CONSTANT_OUTPUT_SPREAD, t.MIN_TOKEN_SPREAD) == (0.9, 0.01, 0.2)
    assert (t.MIN_TRAINABLE, t.HEALTHY_UPDATE, t.LR_TOO_HIGH_UPDATE, t.LR_TOO_LOW_UPDATE) == (0.01, 1e-3, 1e-2, 3e-6)
    assert t.LOSS_SCALE == 100.0 and 1 / t.LOSS_SCALE == 1e-2


def _rules_imports(path: Path) -> list[str]:
    """The ``defib.rules...`` modules a file imports (``from defib.rules import x`` counts as ``defib.rules.x``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("defib.rules")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("defib.rules"):
            if node.module == "defib.rules":
                out += [f"defib.rules.{a.name}" for a in node.names]
            else:
                out.append(node.module)
    return out


@pytest.mark.parametrize("layer", ["report", "fixes"])
def test_report_and_fixes_take_numbers_from_thresholds_only(layer):
    """The catalogue (``defib.rules.base``: docs, codes) is fine; a rule module's internals are not."""
    allowed = {"defib.rules.thresholds", "defib.rules.base"}
    bad = {f"{p.relative_to(SRC)}: {m}" for p in (SRC / layer).rglob("*.py") for m in _rules_imports(p)
           if m not in allowed}
    assert not bad, f"import shared numbers from defib.rules.thresholds instead: {sorted(bad)}"
