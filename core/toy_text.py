"""The toy backbone's text tokenizer (a stable word hash), shared by the toy backbone and the toy-clip encoder."""

from __future__ import annotations

import re
import zlib

import torch


def tokenize(text: str, vocab: int, length: int) -> torch.Tensor:
    """Words -> ids by a stable hash (id 1 is a start token, 0 padding). [length] int64."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    ids = [1] + [2 + zlib.crc32(w.encode()) % (vocab - 2) for w in words]
    ids = (ids + [0] * length)[:length]
    return torch.tensor(ids, dtype=torch.long)
