"""Agreement between head labelings: the common binary "long-range vs not" mapping of every
classifier's labels, confusion / contingency tables, Cohen's kappa and the adjusted Rand index
(numpy only; sklearn's definitions).

The mapping (``BINARY``; docs/methods.md and the methods' docstrings give the rules): a head is
*long-range* when its classifier says it reads, or gives it, history beyond the current chunk
and the frames right before it:

- head_forcing: anchor (>= 0.2 of its mass on the first frames, read far from the start) and
  memory (< 0.72 of its mass within the last 3 frames) are long-range; local is not;
- forcing_kv: dynamic (< 0.8 of its mass beyond the first frames on the chunk and the frame
  before it) is long-range; static is not (static heads keep the sink and 1 frame; the sink
  is kept by every head, so it does not separate the labels);
- pyramid_forcing: anchor (positive-dominant logits on past frames) and wave (a periodic
  logit profile over distance) are long-range; veil (negative-dominant logits: the past is
  mostly ignored, and the method merges its middle frames 4:1) is not;
- dummy_forcing: sink (reads the first frame) and local (reads the frames after it) heads are
  the heads that attend to the cache at all; dummy heads (lowest share of both) attend to the
  current chunk and keep one frame, so they are the not-long-range class.

``ALTERNATIVE`` is a stricter reading of the two three-way classifiers whose middle class is
ambiguous: pyramid_forcing only wave (the class with the longest store, 25 frames of phase
buckets), dummy_forcing only sink (local heads keep the last chunk, 3 frames). The audit
reports kappa under both.
"""

from __future__ import annotations

import numpy as np

BINARY = {
    "head_forcing": {"local": False, "anchor": True, "memory": True},
    "forcing_kv": {"static": False, "dynamic": True},
    "pyramid_forcing": {"anchor": True, "wave": True, "veil": False},
    "dummy_forcing": {"sink": True, "local": True, "dummy": False},
}
ALTERNATIVE = {
    **BINARY,
    "pyramid_forcing": {"anchor": False, "wave": True, "veil": False},
    "dummy_forcing": {"sink": True, "local": False, "dummy": False},
}


def to_binary(labels: np.ndarray, classifier: str, mapping: dict | None = None) -> np.ndarray:
    """[L, H] label names -> [L, H] bool (True: long-range) under ``mapping`` (default BINARY);
    a label the mapping does not know is a ValueError."""
    table = (mapping or BINARY)[classifier]
    labels = np.asarray(labels, dtype=object)
    unknown = sorted({str(x) for x in labels.ravel()} - set(table))
    if unknown:
        raise ValueError(f"{classifier}: labels {unknown} have no binary mapping; known: {', '.join(table)}")
    return np.vectorize(lambda x: table[str(x)], otypes=[bool])(labels)


def contingency(a, b, rows: list | None = None, cols: list | None = None) -> tuple[np.ndarray, list, list]:
    """Counts [len(rows), len(cols)] of (a == rows[i]) & (b == cols[j]) over paired items
    (default rows / cols: the sorted values present)."""
    a, b = np.asarray(a, dtype=object).ravel(), np.asarray(b, dtype=object).ravel()
    if a.shape != b.shape:
        raise ValueError(f"labelings of {a.size} and {b.size} items")
    rows = sorted({x for x in a.tolist()}, key=str) if rows is None else list(rows)
    cols = sorted({x for x in b.tolist()}, key=str) if cols is None else list(cols)
    table = np.array([[int(((a == r) & (b == c)).sum()) for c in cols] for r in rows], dtype=np.int64)
    return table.reshape(len(rows), len(cols)), rows, cols


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two labelings of the same items (same label vocabulary): (p_o - p_e) /
    (1 - p_e), p_o the observed agreement, p_e the agreement expected from the two marginals.
    NaN when p_e = 1 (both labelings give every item one and the same label: undefined, as
    sklearn's cohen_kappa_score)."""
    a, b = np.asarray(a, dtype=object).ravel(), np.asarray(b, dtype=object).ravel()
    labels = sorted({x for x in a.tolist()} | {x for x in b.tolist()}, key=str)
    table, _, _ = contingency(a, b, labels, labels)
    n = table.sum()
    if n == 0:
        return float("nan")
    po = np.trace(table) / n
    pe = float((table.sum(1) * table.sum(0)).sum()) / n**2
    if pe >= 1.0:
        return float("nan")
    return float((po - pe) / (1 - pe))


def _pairs(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2


def adjusted_rand_index(a, b) -> float:
    """Hubert and Arabie's adjusted Rand index of two partitions of the same items (label names
    need not match): (index - expected) / (max - expected) over pair counts; 1.0 when max =
    expected (both partitions trivial and identical), as sklearn's adjusted_rand_score."""
    table, _, _ = contingency(a, b)
    n = table.sum()
    if n < 2:
        return 1.0
    index = _pairs(table).sum()
    rows, cols = _pairs(table.sum(1)).sum(), _pairs(table.sum(0)).sum()
    expected = rows * cols / _pairs(np.array(n))
    top = (rows + cols) / 2
    if top == expected:
        return 1.0
    return float((index - expected) / (top - expected))


def agreement_share(a, b) -> float:
    """Share of items with the same label."""
    return float((np.asarray(a, dtype=object) == np.asarray(b, dtype=object)).mean())


def compare(a: np.ndarray, b: np.ndarray, classifier_a: str, classifier_b: str) -> dict:
    """Everything the audit says about two labelings of the same heads: binary (BINARY and
    ALTERNATIVE) confusion [[not, not-long], [long-not, long-long]] (rows: a) with its kappa and
    agreement, and the full multi-class contingency table with the adjusted Rand index (and, for
    the same classifier, multi-class kappa and agreement)."""
    out = {}
    for name, mapping in (("binary", BINARY), ("alternative", ALTERNATIVE)):
        ba, bb = to_binary(a, classifier_a, mapping), to_binary(b, classifier_b, mapping)
        table, _, _ = contingency(ba, bb, [False, True], [False, True])
        out[name] = {"confusion": table.tolist(), "kappa": cohen_kappa(ba, bb), "agreement": agreement_share(ba, bb),
                     "long_range": [int(ba.sum()), int(bb.sum())]}
    table, rows, cols = contingency(a, b)
    out["contingency"] = {"rows": rows, "cols": cols, "counts": table.tolist()}
    out["ari"] = adjusted_rand_index(a, b)
    if classifier_a == classifier_b:
        out["kappa"] = cohen_kappa(a, b)
        out["agreement"] = agreement_share(a, b)
    return out
