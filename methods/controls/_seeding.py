"""Deterministic torch generators for the randomised controls."""

from __future__ import annotations

import numpy as np
import torch


def seeded_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, *parts)`` (non-negative ints), mixed by
    NumPy's SeedSequence so that neighbouring parts give unrelated streams."""
    state = np.random.SeedSequence([seed, *parts]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))
