"""Forcing-KV: offline static / dynamic heads; dynamic heads add a slot of the least-similar segments.

Ji et al., "Forcing-KV: Hybrid KV Cache Compression for Efficient Autoregressive Video
Diffusion Models", arXiv 2605.09681; code github.com/zju-jiyicheng/Forcing-KV
(``configs_head/head_profile.py``, ``wan/modules/causal_model_forcingkv.py``,
``configs/forcing-kv/forcingkv_self_forcing_inference.yaml``). Training-free; reported >29 FPS
on an H200 and 1.5x the speed of Self Forcing.

What the method does (from the authors' code, Self Forcing configuration):
  - offline, per head, from one frame-wise attention map of a calibration rollout: score =
    mass on the last ``LAST_K`` = 4 key frames (the 3-frame chunk and the frame before it) /
    mass on the key frames after the first ``SKIP_FIRST_K`` = 1; score >= ``THRESHOLD`` = 0.8
    makes a static head, else a dynamic one (the shipped Self Forcing head file, 134 of 360
    heads static, was made with the first 3 key frames skipped: "mass over key frames [3:]");
  - up to the clean pass of chunk ``ar_start`` = 1 every head keeps the first frame (sink,
    ``sink_size`` = 1) + the last max(spatial, temporal context) = 1 frame; from then on,
    in every layer but layer 0 (never split), static heads keep the sink + the last
    ``spatial_context_length`` = 1 frame, dynamic heads the sink + a ``dynamic_context_length``
    = 1 frame slot + the last ``temporal_context_length`` = 1 frame; every head attends to the
    current chunk; keys are cached rotated at their absolute frame;
  - the slot (``dynamic_temporal_enabled``): at each clean pass, the 3 frames that leave a
    dynamic head's 1-frame window (the frame before the chunk and the chunk's first two) are
    candidates, each cut into ``num_frame_patch`` = 6 segments of 260 tokens (a Wan latent
    frame is 30 x 52 = 1560 tokens: 5 token rows each); per segment the mean over its tokens
    of the cosine between its keys and those of the same segment of the next frame (the keys
    of all the layer's dynamic heads concatenated, batch element 0); the round(3 x 6 x
    ``sim_retention_ratio`` = 0.33) = 6 least similar segments (= the slot's 1560 tokens)
    replace the slot. The choice is made at layer 1 and reused by every later layer.

forcebench's version: every published parameter is a field at its published default.
``static_threshold`` 0.8, ``score_last_frames`` 4, ``split_chunk`` 1 (ar_start),
``unsplit_layers`` 1 (the first layers never split: the code's layer 0), ``sink_frames`` 1,
``static_recent_frames`` 1, ``dynamic_recent_frames`` 1, ``dynamic_slot`` true,
``dynamic_slot_frames`` 1, ``candidate_frames`` 3 (the code's hard-coded 3: Wan's chunk; the
toy's chunk is also 3 frames), ``retention`` 0.33, ``selection_layer`` 1. ``segments`` is the
one parameter given in tokens: Wan's 6 segments of 260 tokens are 6 bands of whole token
rows (5 of 30 rows each); 6 does not divide the toy's 16 tokens (4 x 4 rows), so the default
is 4 segments of 4 tokens, one token row each, the nearest count that keeps every segment a
band of whole rows (8 would cut rows in half). round(3 x 4 x 0.33) = 4 segments = one frame,
so the slot stays the published one frame. Set ``segments=6`` on Wan geometries. The
candidates are the ``candidate_frames`` (<= F) newest frames that leave a dynamic head's
recent window of W frames at a write, now - W - C .. now - W - 1, each compared with the
frame after it up to now - W, the oldest one the window keeps: the code's frames at W = 1
(W grows under a budget, below). Each write's choice replaces the previous slot.

Static labels come from forcebench's profile (``Profiler``, the same role map Head Forcing
reads: ``role_map``, ``results/head_roles/toy.json`` by default), not from one attention map:
``mass_by_distance`` [L, H, D] is the mean attention mass per query row by distance from the
querying chunk's start, averaged over every chunk of full-cache calibration rollouts inside
the horizon. The chunk's own keys are distance 0 (its F frames lumped together), the frame
before it distance 1, so the last K key frames are distances 0..K - F (K >= F needed). The
mass on the first frames cannot be read from the distances (frame 0 sits at a different
distance for every chunk, mixed with other frames); the profile's ``sink_mass`` (mass on the
first ``sink_frames`` = 3 frames of the profile's thresholds, on chunks starting at frame >= 6)
stands for it: score = sum(mass_by_distance[..., :K - F + 1]) / (sum(mass_by_distance) -
sink_mass) (``static_scores``). So the first *3* frames are skipped, as in the authors'
shipped head files, not 1 as in their script's default; and the average over all chunks
(the first one puts all its mass on itself) raises scores a little against a single late
chunk's map. On the toy profile this gives 6 static heads of 16 (2 in layer 1, all 4 of
layer 2; none in layer 0, which is never split anyway), 37.5 % against the paper's 134 of
360 (37 %); at B = null that is 38 frames over the 16 heads.
``roles=all_static`` / ``all_dynamic`` ablations ignore the profile.

Differences: the slot is chosen from the dynamic heads of ``selection_layer`` after the whole
chunk is written (the code does it inside layer 1's forward; the same keys); ties between
segment scores go to the earlier frame and segment (the code's ``topk`` leaves them
unspecified); if the selection layer has no dynamic head while another split layer has one,
``check`` refuses the configuration (the code would rank segments of empty keys). The slot is
filled once its candidates all lie after the sink. At a prompt switch nothing changes (the
Self Forcing setting; the authors' LongLive interactive pipeline re-caches the window under
the new prompt). TeaCache and FP8 options are not cache policy and are left out.

Budget. ``budget_frames`` null (default) is the published allocation: per head, static S + Rs,
dynamic S + slot + Rd, unsplit-layer heads S + max(Rs, Rd) frames (2, 3 and 2 at the defaults;
2.4 frames a head on the toy profile). A number B is the mean stored frames per head over all
layers and heads (the unit of methods/bounded.py; ``budget_tokens`` gives it as tokens, wins
when set): the frames the published allocation leaves go to the recent window W of the dynamic
heads and of the unsplit layers' heads, W = floor((B x L x H - fixed) / (n_dynamic + n_unsplit)),
fixed the sinks, slots and static heads' frames. Why: static heads, by their label, put >= 80 %
of the mass beyond the sink on the chunk and the frame before it, so more frames would hardly
be read; the dynamic heads are those that read further back (as Dummy Forcing gives its spare
budget to its local heads); the code sizes the unsplit layer's window as max(static, dynamic
window), so it follows W; the slot keeps its published size (its size is fixed by retention x
candidates). Before the split every head keeps S + min(W, B - S). So allocated KV bytes never
exceed B frames a head, and fall short by less than one frame per growing head. B must cover
the published allocation (at least its mean rounded up, and S + max(Rs, Rd)). At
``sweep=equal_budget``'s B = 16 on the toy profile W = 22: absolute distances beyond the
trained horizon.
Shapes: static, dynamic [L, H] bool; slot selection [candidate_frames, segments] bool.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError, require
from core.geometry import Geometry
from methods.base import KIND_SINK, METHODS, CacheMethod, LayerStore, MethodConfig
from methods.bounded import check_absolute_fits
from methods.roles import TOY_ROLE_MAP, existing_role_map, load_role_map, role_map_stat

ROLE_MODES = ("profiled", "all_static", "all_dynamic")


def static_scores(mass_by_distance: np.ndarray, sink_mass: np.ndarray, frames_per_chunk: int,
                  last_frames: int = 4) -> np.ndarray:
    """Forcing-KV's head score from a forcebench profile.

    mass_by_distance: [L, H, D] mean attention mass by distance from the querying chunk's
    start (0 = the chunk itself, its ``frames_per_chunk`` frames together; d = the frame d
    before the chunk); sink_mass: [L, H] mass on the first frames. Returns [L, H]: the mass on
    the last ``last_frames`` key frames (distances 0..last_frames - frames_per_chunk) over the
    mass on every key but the first frames.
    """
    mass = np.asarray(mass_by_distance, dtype=float)
    recent = mass[..., : last_frames - frames_per_chunk + 1].sum(-1)
    rest = mass.sum(-1) - np.asarray(sink_mass, dtype=float)
    return recent / np.maximum(rest, np.finfo(float).tiny)


def classify_static(scores: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """[L, H] bool: static heads, score >= threshold (the rest are dynamic)."""
    return np.asarray(scores) >= threshold


def select_segments(keys: torch.Tensor, segments: int, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The dynamic slot's choice. keys: [C + 1, T, E], the C candidate frames then the frame
    after them, T tokens a frame in raster order, E features (the dynamic heads' keys side by
    side). Each frame is cut into ``segments`` runs of T / segments tokens; a candidate
    segment's score is the mean over its tokens of the cosine with the same tokens of the next
    frame. Returns (keep [C, segments] bool: the ``keep`` lowest scores, ties to the lower
    index; scores [C, segments])."""
    C, T = keys.shape[0] - 1, keys.shape[1]
    keys = keys.float()
    cos = F.cosine_similarity(keys[:-1], keys[1:], dim=-1)  # [C, T]
    scores = cos.view(C, segments, T // segments).mean(-1)
    chosen = torch.zeros(C * segments, dtype=torch.bool, device=keys.device)
    chosen[torch.argsort(scores.flatten(), stable=True)[:keep]] = True
    return chosen.view(C, segments), scores


@dataclass(frozen=True)
class Allocation:
    """Recent frames a head keeps (the sink, and the slot of dynamic heads, come on top)."""

    dynamic_window: int  # dynamic heads, after the split
    unsplit_window: int  # heads of the unsplit layers, after the split
    pre_split_window: int  # every head, up to the split


@dataclass
class ForcingKVConfig(MethodConfig):
    name: str = "forcing_kv"
    role_map: str = TOY_ROLE_MAP
    roles: str = "profiled"
    static_threshold: float = 0.8
    score_last_frames: int = 4
    split_chunk: int = 1
    unsplit_layers: int = 1
    sink_frames: int = 1
    static_recent_frames: int = 1
    dynamic_recent_frames: int = 1
    dynamic_slot: bool = True
    dynamic_slot_frames: int = 1
    candidate_frames: int = 3
    segments: int = 4
    retention: float = 0.33
    selection_layer: int = 1
    budget_frames: int | None = None
    budget_tokens: int | None = None
    positions: str = "absolute"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.roles in ROLE_MODES, "method.roles", self.roles, f"allowed: {', '.join(ROLE_MODES)}")
        require(0 <= self.static_threshold <= 1, "method.static_threshold", self.static_threshold, "allowed: 0..1")
        require(0 <= self.retention <= 1, "method.retention", self.retention, "allowed: 0..1")
        for key in ("split_chunk", "unsplit_layers", "sink_frames", "static_recent_frames", "dynamic_slot_frames"):
            require(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "allowed: >= 0")
        for key in ("score_last_frames", "dynamic_recent_frames", "candidate_frames", "segments"):
            require(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "allowed: >= 1")
        require(self.selection_layer >= self.unsplit_layers, "method.selection_layer", self.selection_layer,
                f"the first {self.unsplit_layers} layer(s) are never split (method.unsplit_layers); "
                f"allowed: >= {self.unsplit_layers}")
        if self.dynamic_slot:
            kept = self.kept_segments()
            require(kept == self.dynamic_slot_frames * self.segments, "method.retention", self.retention,
                    f"keeps round({self.candidate_frames} x {self.segments} x {self.retention}) = {kept} candidate "
                    f"segments but the slot holds {self.dynamic_slot_frames} x {self.segments}; allowed: a retention "
                    f"with round(candidate_frames x segments x retention) = dynamic_slot_frames x segments")
        if self.budget_frames is not None:
            require(self.budget_frames >= 0, "method.budget_frames", self.budget_frames,
                    "allowed: >= 0, or null (the published allocation)")
        if self.budget_tokens is not None:
            require(self.budget_tokens >= 0, "method.budget_tokens", self.budget_tokens, "allowed: >= 0 or null")
        require(self.positions == "absolute", "method.positions", self.positions,
                "forcing_kv keeps absolute RoPE positions; allowed: absolute")

    def kept_segments(self) -> int:
        """Candidate segments the slot keeps (the code's round(3 x num_frame_patch x ratio))."""
        return int(round(self.candidate_frames * self.segments * self.retention))

    def frames(self, geometry: Geometry) -> int | None:
        """Mean stored frames per head (budget_tokens wins), or None: the published allocation."""
        if self.budget_tokens is not None:
            return self.budget_tokens // geometry.kv_entries_per_frame
        return self.budget_frames

    def scores(self, geometry: Geometry) -> np.ndarray:
        """[L, H] static scores from the role map's profile statistics."""
        file = existing_role_map(self.role_map)
        role_map = load_role_map(file)
        L, H, F_ = geometry.layers, geometry.heads, geometry.frames_per_chunk
        require(self.score_last_frames >= F_, "method.score_last_frames", self.score_last_frames,
                f"the profile counts the chunk's {F_} frames together (distance 0); allowed: >= {F_}")
        sink = role_map_stat(role_map, "sink_mass", self.role_map)
        try:
            mass = np.array(role_map["stats"]["mass_by_distance"], dtype=float)
        except (KeyError, TypeError, ValueError):
            mass = None
        if mass is None or mass.ndim != 3 or mass.shape[:2] != sink.shape:
            raise ConfigError(f"method.role_map={self.role_map!r}: no stats.mass_by_distance [layers, heads, distances]; "
                              "allowed: a role map written by `forcebench profile`")
        if sink.shape != (L, H):
            raise ConfigError(f"method.role_map={self.role_map!r} has {sink.shape[0]} x {sink.shape[1]} heads; "
                              f"the model has {L} x {H}")
        span = self.score_last_frames - F_ + 1
        if mass.shape[2] < span:
            raise ConfigError(f"method.score_last_frames={self.score_last_frames}: needs distances 0..{span - 1}, "
                              f"the profile has {mass.shape[2]}; allowed: <= {mass.shape[2] + F_ - 1}")
        return static_scores(mass, sink, F_, self.score_last_frames)

    def heads(self, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
        """(static labels [L, H] bool, dynamic heads [L, H] bool): the labels of every layer, and
        the heads that get the dynamic cache (those labelled dynamic in the split layers)."""
        L, H = geometry.layers, geometry.heads
        if self.roles == "profiled":
            static = classify_static(self.scores(geometry), self.static_threshold)
        else:
            static = np.full((L, H), self.roles == "all_static")
        dynamic = ~static
        dynamic[: self.unsplit_layers] = False
        return static, dynamic

    def allocate(self, geometry: Geometry, dynamic: np.ndarray) -> Allocation:
        """Recent windows for the dynamic heads [L, H] (see the module doc: the budget)."""
        S, Rs, Rd = self.sink_frames, self.static_recent_frames, self.dynamic_recent_frames
        base = max(Rs, Rd)
        budget = self.frames(geometry)
        if budget is None:
            return Allocation(dynamic_window=Rd, unsplit_window=base, pre_split_window=base)
        L, H = geometry.layers, geometry.heads
        slot = self.dynamic_slot_frames if self.dynamic_slot else 0
        n_unsplit = min(self.unsplit_layers, L) * H
        n_dynamic = int(dynamic.sum())
        n_static = L * H - n_unsplit - n_dynamic
        fixed = n_unsplit * S + n_static * (S + Rs) + n_dynamic * (S + slot)
        growing = n_unsplit + n_dynamic
        least = max(math.ceil((fixed + growing * base) / (L * H)), S + base)
        if budget < least:
            key, value = (("method.budget_tokens", self.budget_tokens) if self.budget_tokens is not None
                          else ("method.budget_frames", self.budget_frames))
            raise ConfigError(f"{key}={value}: {budget} frames a head; the published allocation needs {least} "
                              f"({n_static} static, {n_dynamic} dynamic, {n_unsplit} unsplit heads); "
                              f"allowed: >= {least} frames a head, or null (the published allocation)")
        window = (budget * L * H - fixed) // growing if growing else base
        return Allocation(dynamic_window=window, unsplit_window=window, pre_split_window=min(window, budget - S))

    def layout(self, geometry: Geometry) -> tuple[np.ndarray, np.ndarray, Allocation]:
        """(static labels, dynamic heads, allocation), with the checks that need the labels."""
        require(self.selection_layer < geometry.layers, "method.selection_layer", self.selection_layer,
                f"the model has {geometry.layers} layers; allowed: {self.unsplit_layers}..{geometry.layers - 1}")
        static, dynamic = self.heads(geometry)
        if self.dynamic_slot and dynamic.any() and not dynamic[self.selection_layer].any():
            with_dynamic = [int(i) for i in np.flatnonzero(dynamic.any(1))]
            raise ConfigError(f"method.selection_layer={self.selection_layer}: layer {self.selection_layer} has no "
                              f"dynamic head to choose the slot's segments from; allowed: one of {with_dynamic}")
        return static, dynamic, self.allocate(geometry, dynamic)

    def check(self, geometry: Geometry, max_frames: int) -> None:
        check_absolute_fits(geometry, max_frames, self.name)
        F_, tpf = geometry.frames_per_chunk, geometry.tokens_per_frame
        require(tpf % self.segments == 0, "method.segments", self.segments,
                f"must divide the {tpf} tokens of a frame; allowed: a divisor of {tpf}")
        require(self.candidate_frames <= F_, "method.candidate_frames", self.candidate_frames,
                f"the candidates are frames that leave the dynamic window at a write of {F_}; allowed: <= {F_}")
        self.layout(geometry)


@METHODS.register("forcing_kv", config=ForcingKVConfig)
class ForcingKV(CacheMethod):
    """After the split: static heads keep sink + recent frames, dynamic heads sink + the slot's
    segments + recent frames, unsplit layers sink + recent frames; absolute positions.

    ``selected`` [C, segments] bool / ``segment_scores`` [C, segments]: the slot's choice at the
    last write, over the candidate frames ``slot_first``..``slot_first`` + C - 1 (None before
    the first fill)."""

    config: ForcingKVConfig

    def reset(self) -> None:
        super().reset()
        static, dynamic, self.alloc = self.config.layout(self.geometry)
        self.static = torch.from_numpy(static)
        self.dynamic = torch.from_numpy(dynamic)
        self.selected: torch.Tensor | None = None
        self.segment_scores: torch.Tensor | None = None
        self.slot_first: int | None = None

    def split(self) -> bool:
        """Are the heads split (the clean pass of chunk ``split_chunk`` has been written)?"""
        return self.frames_written >= (self.config.split_chunk + 1) * self.geometry.frames_per_chunk

    def write(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        """Store a clean chunk (per layer k, v [B, H, F * tpf, D]); the selection layer is
        written first and chooses the slot, then every layer evicts."""
        g, c = self.geometry, self.config
        n = g.frames_per_chunk * g.tokens_per_frame
        frame = chunk_start + torch.arange(n, device=self.device) // g.tokens_per_frame
        spatial = torch.arange(n, device=self.device) % g.tokens_per_frame
        self.frames_written = chunk_start + g.frames_per_chunk
        sel = min(c.selection_layer, g.layers - 1)
        order = [sel] + [layer for layer in range(g.layers) if layer != sel]
        for layer in order:
            k, v = kv[layer]
            self.layers[layer].append(k.to(self.dtype), v.to(self.dtype), frame, spatial)
            if layer == sel:
                self._select(self.layers[layer], self.dynamic[layer])
        for layer, store in enumerate(self.layers):
            self.evict(layer, store)

    def _select(self, store: LayerStore, dynamic: torch.Tensor) -> None:
        """Choose the slot's segments from the candidate frames that leave the dynamic window
        now, by the keys of the selection layer's dynamic heads ``dynamic`` [H] bool."""
        c, g = self.config, self.geometry
        C, W, tpf = c.candidate_frames, self.alloc.dynamic_window, g.tokens_per_frame
        first = self.frames_written - W - C
        self.selected, self.segment_scores, self.slot_first = None, None, None
        filled = self.frames_written > (c.split_chunk + 1) * g.frames_per_chunk  # a write after the split
        if not (c.dynamic_slot and filled and bool(dynamic.any()) and first >= c.sink_frames):
            return
        heads = dynamic.nonzero().flatten().to(store.head.device)
        mask = torch.isin(store.head, heads) & (store.frame >= first) & (store.frame <= first + C)
        idx = mask.nonzero().flatten()
        rank = (store.head[idx] * (C + 1) + store.frame[idx] - first) * tpf + store.spatial[idx]
        idx = idx[torch.argsort(rank)]
        n, D = len(heads), store.k.shape[-1]
        if idx.numel() != n * (C + 1) * tpf:
            raise RuntimeError(f"forcing_kv: frames {first}..{first + C} of the selection layer's dynamic heads are "
                               f"not all stored ({idx.numel()} of {n * (C + 1) * tpf} entries)")
        keys = store.k[0, idx].view(n, C + 1, tpf, D).permute(1, 2, 0, 3).reshape(C + 1, tpf, n * D)
        self.selected, self.segment_scores = select_segments(keys, c.segments, c.kept_segments())
        self.slot_first = first

    def evict(self, layer: int, store: LayerStore) -> None:
        c, a, now = self.config, self.alloc, self.frames_written
        sink = store.frame < c.sink_frames
        store.kind[sink] = KIND_SINK
        if not self.split() or layer < c.unsplit_layers:
            window = a.unsplit_window if self.split() else a.pre_split_window
            store.keep(sink | (store.frame >= now - window))
            return
        dyn = self.dynamic[layer].to(store.head.device)[store.head]
        keep = sink | (~dyn & (store.frame >= now - c.static_recent_frames))
        keep |= dyn & (store.frame >= now - a.dynamic_window)
        if self.selected is not None:
            offset = store.frame - self.slot_first
            candidate = (offset >= 0) & (offset < c.candidate_frames)
            segment = store.spatial // (self.geometry.tokens_per_frame // c.segments)
            chosen = self.selected.to(store.frame.device)[offset.clamp(0, c.candidate_frames - 1), segment]
            keep |= dyn & candidate & chosen
        store.keep(keep)
