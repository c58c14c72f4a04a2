"""Figures of head labels: one layers x heads grid per classifier, each cell coloured by its
label (a heavy outline: a head the audit maps to "long-range"), and the ablation's effects with
their intervals. Written atomically (PNG bytes through core.files)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from core.files import atomic_write_bytes  # noqa: E402

COLOURS = {  # label -> colour (Head Forcing's heatmap colours for its roles)
    "local": "#9ecae1", "anchor": "#fdae6b", "memory": "#a1d99b",
    "static": "#c6dbef", "dynamic": "#fb6a4a",
    "wave": "#9e9ac8", "veil": "#d9d9d9",
    "sink": "#fdd0a2", "dummy": "#f0f0f0",
}
OTHER = "#ffffff"


def draw_labels(ax, labels: np.ndarray, title: str, notes: list[list[str]] | None = None,
                outline: np.ndarray | None = None) -> None:
    """One grid: labels [L, H] names, ``notes`` [L][H] text printed under each label, a heavy
    outline around the cells where ``outline`` [L, H] is True."""
    labels = np.asarray(labels, dtype=object)
    names = sorted({str(x) for x in labels.ravel()})
    code = {name: i for i, name in enumerate(names)}
    grid = np.vectorize(lambda x: code[str(x)])(labels)
    ax.imshow(grid, cmap=ListedColormap([COLOURS.get(n, OTHER) for n in names] or [OTHER]), vmin=-0.5,
              vmax=max(len(names) - 0.5, 0.5), interpolation="nearest")
    L, H = labels.shape
    for layer in range(L):
        for head in range(H):
            text = str(labels[layer, head]) + (f"\n{notes[layer][head]}" if notes else "")
            ax.text(head, layer, text, ha="center", va="center", fontsize=7)
            if outline is not None and outline[layer, head]:
                ax.add_patch(Rectangle((head - 0.46, layer - 0.46), 0.92, 0.92, fill=False, edgecolor="black", lw=2))
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)], fontsize=7)
    ax.set_yticks(range(L), [f"layer {layer}" for layer in range(L)], fontsize=7)
    ax.set_title(title, fontsize=8)


def _save(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def save_labels_heatmap(path: Path, labels: np.ndarray, title: str, notes: list[list[str]] | None = None) -> None:
    L, H = np.asarray(labels).shape
    fig, ax = plt.subplots(figsize=(1.6 * H + 1.5, 1.0 * L + 1.2))
    draw_labels(ax, labels, title, notes)
    fig.tight_layout()
    _save(fig, Path(path))


def save_label_panels(path: Path, panels: list[tuple[str, np.ndarray, list[list[str]] | None, np.ndarray | None]]) -> None:
    """One grid per (title, labels, notes, outline), side by side."""
    L, H = np.asarray(panels[0][1]).shape
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * (1.35 * H + 0.9), 1.0 * L + 1.4), squeeze=False)
    for ax, (title, labels, notes, outline) in zip(axes[0], panels):
        draw_labels(ax, labels, title, notes, outline)
    fig.tight_layout()
    _save(fig, Path(path))


def save_ablation_plot(path: Path, rows: list[dict], ylabel: str) -> None:
    """Paired effects with their intervals. rows: {"label", "mean", "lo", "hi", "mdd"} (one bar each)."""
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 2.5, 3.6))
    x = np.arange(len(rows))
    mean = np.array([r["mean"] for r in rows], float)
    err = np.array([[r["mean"] - r["lo"] for r in rows], [r["hi"] - r["mean"] for r in rows]], float)
    ax.bar(x, mean, color="#9ecae1", yerr=np.nan_to_num(err), capsize=4)
    for i, r in enumerate(rows):
        if np.isfinite(r.get("mdd", np.nan)):
            ax.plot([i - 0.4, i + 0.4], [r["mdd"]] * 2, color="#de2d26", lw=1)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [r["label"] for r in rows], fontsize=7, rotation=15)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title("mean paired difference, 95% bootstrap interval; red: minimum detectable difference", fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))
