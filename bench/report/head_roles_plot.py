"""Head-role heatmap: layers x heads coloured by role, each cell annotated with its statistics."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from core.files import atomic_write_bytes  # noqa: E402


def save_heatmap(path: Path, role_map: dict) -> None:
    """Layers x heads, coloured by role, each cell annotated with sink / local mass and entropy."""
    roles = np.array(role_map["roles"])
    codes = {"local": 0, "anchor": 1, "memory": 2}
    grid = np.vectorize(codes.get)(roles)
    L, H = roles.shape
    fig, ax = plt.subplots(figsize=(1.6 * H + 1.5, 1.0 * L + 1.2))
    ax.imshow(grid, cmap=ListedColormap(["#9ecae1", "#fdae6b", "#a1d99b"]), vmin=0, vmax=2)
    s = role_map["stats"]
    for layer in range(L):
        for head in range(H):
            ax.text(head, layer, f"{roles[layer, head]}\nsink {s['sink_mass'][layer][head]:.2f}\n"
                    f"local {s['local_mass'][layer][head]:.2f}\nH {s['entropy'][layer][head]:.2f}",
                    ha="center", va="center", fontsize=7)
    ax.set_xticks(range(H), [f"head {h}" for h in range(H)])
    ax.set_yticks(range(L), [f"layer {layer}" for layer in range(L)])
    c = role_map["counts"]
    ax.set_title(f"{role_map['model']}: {c['local']} local, {c['anchor']} anchor, {c['memory']} memory heads")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
