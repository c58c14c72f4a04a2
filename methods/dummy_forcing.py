"""Dummy Forcing: heads classified online from their attention; dummy heads keep one frame.

Guo et al., "Efficient Autoregressive Video Diffusion with Dummy Head", arXiv 2601.20499;
code github.com/csguoh/DummyForcing (``wan/modules/dummyforcing.py``,
``wan/modules/causal_model.py``, ``configs/self_forcing_inference.yaml``). Training-free,
online and per rollout: no profile.

What the method does (from the authors' code, Self Forcing configuration):
  - until the classification step every head keeps the first frame (the sink) plus the
    last ``local_context_length`` = 1 chunk (3 frames); absolute RoPE positions;
  - at autoregressive step ``ar_start`` = 1 (the second chunk), on the pass at timestep
    ``denoise_start`` = 0 (the clean pass that writes the cache), a sample of query rows
    (``HW // 3`` rows drawn with replacement from the chunk's queries, HW one frame's
    tokens at ar_start = 1: a ninth of the rows) gives per head the mean softmax mass on the
    first frame (p0) and on the frames between it and the chunk (p1; frames 1-2 at that
    step); each is normalised over all heads of all layers (p0n = p0 / sum p0, p1n likewise);
    cost = max(p0n, p1n); the ``num_dummy`` = 180 heads of lowest cost (of Wan 1.3B's
    30 x 12 = 360: half; the paper reports about 25 % of heads as dummy-like) are dummy
    heads, and of the rest a head with p0n < p1n is a local head, else a sink head;
  - from then on: dummy heads keep only the most recent frame, local heads the last
    ``local_context_length`` chunks, sink heads the first frame; every head also attends
    to the current chunk. The paper's long-context use gives the memory dummy heads free to
    a longer local context.

forcebench's version: every published parameter is a field at its published default,
scaled to the toy geometry where it is absolute: ``dummy_fraction`` = 0.5 (num_dummy 180 of
360; on the toy's 4 x 4 heads, 8 dummy heads), ``classify_chunk`` = 1 (ar_start; the toy
has Wan's chunks of 3 frames, so chunk 1 is frames 3-5 as in the paper), ``local_chunks``
= 1 (local_context_length), ``sink_frames`` = 1 and ``dummy_frames`` = 1 (the code's one
frame, HW tokens, for the first-frame region and for what sink and dummy heads keep).
Differences: the masses come from the kernels' attention observer (``observe_attention``,
the mechanism the score-based methods use): the mass each cache entry received summed over
*all* query rows and the batch, which is what the sampled rows estimate, without the random
draw (the code uses batch element 0; forcebench runs batch 1). ``denoise_start`` = 0 is not
a field: the observer is not told the timestep, so classification always uses the last
forward before the chunk is written, which is the t = 0 clean pass (the toy's ground-truth
prefix chunks have only that pass). The code's LongLive setting (ar_start = 2) takes a
3-frame first region by its shapes; forcebench's first region is always the first
``sink_frames`` frames. TeaCache options are not cache policy and are left out.

Budget. ``budget_frames`` null (default) is the published allocation: the mean stored frames
per head is then (dummy_frames x dummies + sink_frames x sinks + 3 x locals) / heads, between
1 and 2 frames on the toy, set by the classification. A number B is the mean stored frames
per head over all layers and heads (the unit of the bounded methods): dummy and sink heads
keep their frames and the local heads share the rest, window = floor((B x heads - dummy
frames - sink frames) / locals), so allocated KV bytes never exceed B frames a head and
fall short by less than one frame per local head (a rollout with no local head spends less).
At ``sweep=equal_budget``'s B = 16 on the toy (8 dummy heads) the local heads keep dozens of
frames, at absolute distances far beyond the trained horizon, as in the paper's
long-context use. ``budget_tokens`` gives B as a total token count instead (wins when set).
Before classification every head keeps the sink plus ``local_chunks`` chunks whatever B is.
Shapes: roles [L, H] (``ROLE_*``), head_mass (p0, p1) [L, H] mean mass per query row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import require
from core.geometry import Geometry
from methods.base import KIND_SINK, METHODS, CacheMethod, LayerStore, MethodConfig
from methods.bounded import check_absolute_fits

ROLE_SINK, ROLE_LOCAL, ROLE_DUMMY = 0, 1, 2
ROLE_NAMES = {ROLE_SINK: "sink", ROLE_LOCAL: "local", ROLE_DUMMY: "dummy"}


@dataclass
class DummyForcingConfig(MethodConfig):
    name: str = "dummy_forcing"
    dummy_fraction: float = 0.5
    classify_chunk: int = 1
    local_chunks: int = 1
    sink_frames: int = 1
    dummy_frames: int = 1
    budget_frames: int | None = None
    budget_tokens: int | None = None
    positions: str = "absolute"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 <= self.dummy_fraction <= 1, "method.dummy_fraction", self.dummy_fraction, "allowed: 0..1")
        require(self.classify_chunk >= 1, "method.classify_chunk", self.classify_chunk,
                "the first chunk has no cache to measure; allowed: >= 1")
        for key in ("local_chunks", "sink_frames", "dummy_frames"):
            require(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "allowed: >= 1")
        least = max(self.sink_frames, self.dummy_frames)
        if self.budget_frames is not None:
            require(self.budget_frames >= least, "method.budget_frames", self.budget_frames,
                    f"sink and dummy heads keep {least} frame(s); allowed: >= {least}, or null (published allocation)")
        if self.budget_tokens is not None:
            require(self.budget_tokens >= 0, "method.budget_tokens", self.budget_tokens, "allowed: >= 0 or null")
        require(self.positions == "absolute", "method.positions", self.positions,
                "dummy_forcing keeps absolute RoPE positions; allowed: absolute")

    def frames(self, geometry: Geometry) -> int | None:
        """Mean stored frames per head (budget_tokens wins), or None: the published allocation."""
        if self.budget_tokens is not None:
            return self.budget_tokens // geometry.kv_entries_per_frame
        return self.budget_frames

    def num_dummy(self, geometry: Geometry) -> int:
        return round(self.dummy_fraction * geometry.layers * geometry.heads)

    def local_window(self, geometry: Geometry, roles: torch.Tensor) -> int:
        """Frames a local head keeps, given the roles [L, H]."""
        budget = self.frames(geometry)
        if budget is None:
            return self.local_chunks * geometry.frames_per_chunk
        n_dummy, n_sink = int((roles == ROLE_DUMMY).sum()), int((roles == ROLE_SINK).sum())
        spare = budget * roles.numel() - n_dummy * self.dummy_frames - n_sink * self.sink_frames
        return spare // max(int((roles == ROLE_LOCAL).sum()), 1)

    def check(self, geometry: Geometry, max_frames: int) -> None:
        check_absolute_fits(geometry, max_frames, self.name)
        start = self.classify_chunk * geometry.frames_per_chunk
        require(self.sink_frames < start, "method.sink_frames", self.sink_frames,
                f"frames after the sink must be cached when heads are classified at frame {start} "
                f"(method.classify_chunk={self.classify_chunk}); allowed: < {start}")
        least = max(self.sink_frames, self.dummy_frames)
        if self.budget_tokens is not None:
            require(self.frames(geometry) >= least, "method.budget_tokens", self.budget_tokens,
                    f"{self.frames(geometry)} frames a head; sink and dummy heads keep {least}; allowed: >= "
                    f"{least * geometry.kv_entries_per_frame}")


def classify_heads(p0: torch.Tensor, p1: torch.Tensor, num_dummy: int) -> torch.Tensor:
    """Dynamic head programming. p0, p1: [L, H] attention mass on the first frame and on the
    frames after it. Returns roles [L, H] int64: the ``num_dummy`` heads of lowest
    max(p0n, p1n) (each normalised over all heads; ties by head order) are ROLE_DUMMY, the
    rest ROLE_LOCAL where p0n < p1n, else ROLE_SINK."""
    tiny = torch.finfo(torch.float32).tiny
    p0n = p0.double() / p0.double().sum().clamp_min(tiny)
    p1n = p1.double() / p1.double().sum().clamp_min(tiny)
    roles = torch.where(p0n < p1n, ROLE_LOCAL, ROLE_SINK).flatten()
    cost = torch.maximum(p0n, p1n).flatten()
    roles[torch.argsort(cost, stable=True)[:num_dummy]] = ROLE_DUMMY
    return roles.view(p0.shape)


@METHODS.register("dummy_forcing", config=DummyForcingConfig)
class DummyForcing(CacheMethod):
    config: DummyForcingConfig
    needs_attention_mass = True

    def reset(self) -> None:
        super().reset()
        self.roles: torch.Tensor | None = None
        self.head_mass: tuple[torch.Tensor, torch.Tensor] | None = None
        self.local_frames = self.config.local_chunks * self.geometry.frames_per_chunk
        self._mass: dict[int, torch.Tensor] = {}

    def _classifying(self) -> bool:
        """Is the chunk being generated the one whose attention classifies the heads?"""
        return self.roles is None and self.frames_written == self.config.classify_chunk * self.geometry.frames_per_chunk

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        if self._classifying():  # each forward overwrites: at write time the clean pass's mass is left
            self._mass[layer] = mass.detach().float().cpu()

    def write(self, kv, chunk_start: int) -> None:
        if self._classifying():
            self._classify()
        super().write(kv, chunk_start)

    def _classify(self) -> None:
        g = self.geometry
        missing = [layer for layer in range(g.layers) if layer not in self._mass]
        if missing:
            raise RuntimeError(f"dummy_forcing saw no attention mass for layers {missing} at frame "
                               f"{self.frames_written}; run it through bench.rollout.generate")
        p0, p1 = torch.zeros(g.layers, g.heads), torch.zeros(g.layers, g.heads)
        for layer, store in enumerate(self.layers):
            mass, head = self._mass[layer], store.head.cpu()
            first = store.frame.cpu() < self.config.sink_frames
            p0[layer].index_add_(0, head[first], mass[first])
            p1[layer].index_add_(0, head[~first], mass[~first])
        queries = self.batch * g.frames_per_chunk * g.tokens_per_frame
        self.head_mass = (p0 / queries, p1 / queries)
        self.roles = classify_heads(p0, p1, self.config.num_dummy(g))
        self.local_frames = self.config.local_window(g, self.roles)
        self._mass.clear()

    def evict(self, layer: int, store: LayerStore) -> None:
        c, now = self.config, self.frames_written
        first = store.frame < c.sink_frames
        store.kind[first] = KIND_SINK
        if self.roles is None:
            store.keep(first | (store.frame >= now - self.local_frames))
            return
        role = self.roles[layer].to(store.head.device)[store.head]
        keep = (role == ROLE_SINK) & first
        keep |= (role == ROLE_DUMMY) & (store.frame >= now - c.dummy_frames)
        keep |= (role == ROLE_LOCAL) & (store.frame >= now - self.local_frames)
        store.keep(keep)
