"""Fixtures for the rule tests; the tiny BERT checkpoint (``tiny_model_dir``) comes from tests/conftest.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is ~5x faster than two contending ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def seeded():
    """Every test starts from the same RNG state, so its numbers do not depend on test order."""
    torch.manual_seed(0)
