"""Profile attention heads (``forcebench profile``): where does each head look?

Calibration rollouts inside the trained horizon with the full cache, on prompts of the
training split. For every layer and head the kernels report the attention mass each
cache entry receives; it is grouped by temporal distance (in frames, from the start of
the querying chunk; 0 = the chunk itself), and averaged over queries, denoising steps,
prompts and seeds. Also: mass on the first ``sink_frames`` frames, counted only for
chunks starting at frame >= 2 * sink_frames (so the start is not simply nearby), and the
entropy (nats) of the head's mean attention distribution over distances.

Output: a role map JSON (statistics, roles, thresholds and the config that made it) and
a heatmap PNG (layers x heads coloured by role, with the statistics).
"""

from __future__ import annotations

import numpy as np
import torch

from methods.base import CacheMethod
from methods.full import FullConfig


class Profiler(CacheMethod):
    """The full cache, recording attention mass by distance per layer and head."""

    needs_attention_mass = True

    def __init__(self, geometry, sink_frames: int = 3, **kwargs) -> None:
        self.sink_frames = sink_frames
        g = geometry
        self.mass = np.zeros((g.layers, g.heads, g.horizon_frames))
        self.queries = np.zeros((g.layers, g.heads))
        self.sink = np.zeros((g.layers, g.heads))
        self.sink_queries = np.zeros((g.layers, g.heads))
        super().__init__(FullConfig(), geometry, **kwargs)

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        g, store = self.geometry, self.layers[layer]
        start = self.frames_written  # the querying chunk's first frame
        n_queries = self.batch * g.frames_per_chunk * g.tokens_per_frame
        dist = (start - store.frame).clamp(max=g.horizon_frames - 1).cpu().numpy()
        m, heads = mass.double().cpu().numpy(), store.head.cpu().numpy()
        per_head = np.zeros((g.heads, g.horizon_frames))
        np.add.at(per_head, (heads, dist), m)
        per_head[:, 0] = n_queries - per_head.sum(1)  # the chunk's own keys
        self.mass[layer] += per_head
        self.queries[layer] += n_queries
        if start >= 2 * self.sink_frames:
            first = (store.frame < self.sink_frames).cpu().numpy()
            np.add.at(self.sink[layer], heads[first], m[first])
            self.sink_queries[layer] += n_queries

    def summary(self) -> dict[str, np.ndarray]:
        by_distance = self.mass / self.queries[..., None]
        p = np.clip(by_distance, 1e-12, None)
        return {"mass_by_distance": by_distance, "sink_mass": self.sink / np.maximum(self.sink_queries, 1),
                "entropy": -(p * np.log(p)).sum(-1)}


