"""Pyramid Forcing: offline Anchor / Wave / Veil heads, each with a [sink + middle + recent] cache.

Chen et al., "Pyramid Forcing: Head-Aware Pyramid KV Cache Policy for High-Quality Long Video
Generation", arXiv 2605.13111; code github.com/IF-LAB-PKU/Pyramid-Forcing. Training-free,
on Self Forcing (Wan 1.3B); VBench-Long at 60 s 77.87 (Self Forcing) -> 81.21.

What the method does (from the authors' code: ``configs/pyramid-forcing.yaml``, the
recommended preset; ``pyramidkv/adaptive_cache.py`` ``get_decoupled_flat_kv_and_frames`` and
``_collect_middle_cache``; ``pyramidkv/rope.py`` ``map_sink_time``; the strategy state
machines in ``headkv/_mega_state_ref.py``; ``tests/test_strategy_*.py``):
  - heads are labelled offline (methods/pyramid_profile.py): Anchor (label 1, 172 of Wan's
    360 heads), Wave (-1, 156), Veil (2, 32);
  - every head keeps a sink of the first frames (Wave 1, Anchor and Veil 3:
    ``pyramidkv_label_sink_frames_map``) and a recent pool of 4 frames
    (``pyramidkv_label_recent_frames_map``) that *includes the chunk being generated* (the
    noisy passes write it there tentatively; tests/test_mega_cache_noisy_clean.py), so 4 - 3 =
    1 earlier frame;
  - middle, Wave ("cyclic", period 6, ``cyclic_bucket_cap`` 4): every clean frame t goes to
    phase bucket t mod 6, a ring of the 4 latest; query frame t reads its own phase bucket:
    frames t - 6, t - 12, t - 18, t - 24;
  - middle, Anchor ("stride", interval 6, capacity 4): frames with t mod 6 = 0 enter a FIFO of
    the 4 latest (frame 0 included, then hidden behind the sink);
  - middle, Veil ("merge", ``merge_patch_size`` 2, capacity 4): blocks of 2 x 2 = 4 frames;
    each completed block becomes one token per 2 x 2 spatial patch, the mean of its 16 keys
    and values, at the block's median time (frames 0-3 -> t = 1); a FIFO of the 4 newest
    completed blocks (block 0 hidden behind the sink);
  - a middle frame is read only if it is neither in the sink nor at or after the recent
    pool's first frame (``tail_min_t = t - recent + 1``);
  - positions ("window_clamp", ``sink_time_clamp_min`` 18 / ``_max`` 21): the query at its
    own frame t; the sink and the cyclic and stride middle frames (``*_dynamic_rope: true``)
    all at ``sync = max(0, t - clamp(t, 18, 21))`` (= max(0, t - 21): the lower clamp has no
    effect), i.e. 21 frames before the query once t >= 21, at its true distance before;
    merged tokens at their block's median time; recent frames at their own time. Every
    distance stays within 21 frames at any duration.
  - the readout is per query frame (wan/modules/attention/core.py, the per-frame loop): each
    of the chunk's 3 query frames has its own sync time, phase and ``tail_min_t``.

forcebench's version. The kernels take one view per chunk and head, so the chunk's query
frames share one: its rules are those of the chunk's *last* frame s_last = s + F - 1
(``tail_min = s_last - recent + 1``, ``sync`` from s_last: from frame 21 on the sink is 19, 20,
21 frames before the three query frames, inside the published window [18, 21]), and a Wave head reads the
union of its query frames' phase buckets (frames s + c - 6k, c < F, k = 1..4: 12 frames, each
query frame's own 4 among them). Per head, stored (LayerStore; each frame once, where the
authors keep separate sink / cyclic / stride / recent pools): the sink, the recent frame(s),
and Wave's whole ring (the last period x bucket_cap = 24 frames: every phase a later chunk
will read), Anchor's stride FIFO, Veil's merged tokens (kind merged, ``weight`` = raw keys
merged; a frame is folded into its block when it leaves the recent pool, so a block is
complete once its last frame has left it; the block being filled is stored, hidden). The
merge averages keys as stored, spatially rotated (q . mean(k) is the mean of the raw logits);
the authors average un-rotated keys and rotate the mean at the patch's top-left position.
Positions are shifted by -sync (RoPE is relative: attention is unchanged) so that they stay
in [0, 21] at any duration, and any history position below sync is clamped to it.
``merge_bias`` (default true) gives a merged token the log(weight) logit bias of LayerStore
(it receives the mass of the 16 raw keys it stands for); false reads it as the authors' plain
mean token. At a prompt switch nothing changes (the method has no re-cache).

Parameters (published defaults, configs/pyramid-forcing.yaml): ``wave_sink_frames`` 1
(``pyramidkv_osc_sink_frames``), ``anchor_sink_frames`` / ``veil_sink_frames`` 3
(``pyramidkv_stable_sink_frames``; ``pyramidkv_sink_tokens`` 4680 = 3 x 1560 tokens a frame),
``*_recent_frames`` 4, ``cyclic_period`` 6, ``cyclic_bucket_cap`` 4, ``cyclic_dynamic_rope``
true, ``stride_interval`` 6, ``stride_capacity`` 4, ``stride_dynamic_rope`` true,
``merge_patch_size`` 2 (block = 4 frames), ``merge_capacity`` 4, ``sink_time_clamp_min`` 18,
``sink_time_clamp_max`` 21. Scaling to the toy: the toy has Wan's latent timing (21-frame
horizon, chunks of 3, 4 fps), so the frame-denominated values are used unchanged; the one
token-denominated one (sink tokens) is converted to frames; 2 x 2 patches of its 4 x 4 token
grid give 4 merged tokens a block (Wan: 15 x 26 = 390). Not fields: ``merge_dynamic_rope``
(merged tokens always keep their block time in the code), ``history_time_mapping_mode: none``
(recent frames at their own time), the lag strategy (disabled), ``decoupled_sink_time_lag``
(lag mode only), the 32760 / 31200-token capacities (21 / 20 frames, bounds the label
policies stay under), TeaCache and CUDA-graph options (not cache policy).

Budget. ``budget_frames`` null (default) is the published allocation. Stored frames a head
(F = 3, the toy): Wave 1 + 6 x 4 = 25 (its recent frame lies in the ring; the bound below counts
it again: 26), Anchor 3 + 4 + 1 = 8, Veil 3 + 1 + (4 + 1) blocks x 4 tokens / 16 = 5.25 at most
(toy_pyramid.json's 10 / 5 / 1 heads: a bound of 13.45 frames a head on average); the authors count
the frames a query *reads* (scripts/compute_kv_tokens.py: 9 / 11 / 7). A number B is the
mean stored frames per head over all layers and heads at equal KV bytes (the bounded
methods' unit; ``budget_tokens``, a total over all layers and heads, wins when set): sinks
and recent pools stay, and every class's middle capacity is scaled by one factor lambda
(``bucket_cap``, ``stride_capacity``, ``merge_capacity`` = floor(lambda x published)), the
largest lambda whose upper bound of stored entries (above) fits B x tokens a frame x heads;
so allocated KV bytes never exceed B frames a head. Older middle frames sit at ``sync`` or are
clamped to it, so positions stay in the window at any B. On the toy's labels at
``sweep=equal_budget``'s B = 16 every middle capacity becomes 5 (a bound of 15.97 frames a
head); B = 8 gives 1. B below the sinks and recent pools alone is a one-line config error.

The labels (``role_map``, default results/head_roles/toy_pyramid.json: 10 Anchor, 5 Wave,
1 Veil of the toy's 16 heads; or ``labels`` inline, [L][H] names) come from methods/pyramid_profile.py.
Shapes: labels [L, H] (``ANCHOR`` / ``WAVE`` / ``VEIL``); per layer LayerStore k, v [B, N, D];
views give pos [N] and q_pos [H, F].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from core.errors import ConfigError, require
from core.geometry import Geometry
from core.paths import existing_file
from kernels import RaggedKV
from methods.base import KIND_MERGED, KIND_SINK, METHODS, CacheMethod, LayerStore, MethodConfig
from methods.pyramid_profile import LABELS, TOY_PYRAMID_LABELS, read_pyramid_labels

ANCHOR, WAVE, VEIL = 0, 1, 2
CODES = {name: code for code, name in enumerate(LABELS)}  # "anchor" -> 0, "wave" -> 1, "veil" -> 2


@dataclass(frozen=True)
class Allocation:
    """Middle capacities in force (the published ones, or scaled to a budget) and the upper
    bound of the entries they can store over all layers and heads."""

    bucket_cap: int
    stride_capacity: int
    merge_capacity: int
    bound_entries: int


def merge_grid(geometry: Geometry, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial patches of ``patch`` x ``patch`` tokens, row-major (the authors' grouping):
    (group of every token [P] int64, top-left token of every group [G] int64)."""
    C, height, width = geometry.frame_shape
    side = math.sqrt(height * width / geometry.tokens_per_frame)
    rows, cols = round(height / side), round(width / side)
    if rows * cols != geometry.tokens_per_frame:
        raise ConfigError(f"method.merge_patch_size={patch}: cannot lay the {geometry.tokens_per_frame} tokens of a "
                          f"{height} x {width} frame on a grid; allowed: a backbone with a regular patch grid")
    token = torch.arange(geometry.tokens_per_frame)
    gcols = -(-cols // patch)
    group = (token // cols // patch) * gcols + (token % cols) // patch
    first = torch.full((int(group.max()) + 1,), geometry.tokens_per_frame, dtype=torch.long)
    first.scatter_reduce_(0, group, token, reduce="amin")
    return group, first


@dataclass
class PyramidForcingConfig(MethodConfig):
    name: str = "pyramid_forcing"
    role_map: str = TOY_PYRAMID_LABELS
    labels: list[list[str]] | None = None
    wave_sink_frames: int = 1
    anchor_sink_frames: int = 3
    veil_sink_frames: int = 3
    wave_recent_frames: int = 4
    anchor_recent_frames: int = 4
    veil_recent_frames: int = 4
    cyclic_period: int = 6
    cyclic_bucket_cap: int = 4
    cyclic_dynamic_rope: bool = True
    stride_interval: int = 6
    stride_capacity: int = 4
    stride_dynamic_rope: bool = True
    merge_patch_size: int = 2
    merge_capacity: int = 4
    merge_bias: bool = True
    sink_time_clamp_min: int = 18
    sink_time_clamp_max: int = 21
    budget_frames: int | None = None
    budget_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("wave_sink_frames", "anchor_sink_frames", "veil_sink_frames", "cyclic_bucket_cap",
                    "stride_capacity", "merge_capacity", "sink_time_clamp_min"):
            require(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "allowed: >= 0")
        for key in ("wave_recent_frames", "anchor_recent_frames", "veil_recent_frames", "cyclic_period",
                    "stride_interval", "merge_patch_size"):
            require(getattr(self, key) >= 1, f"method.{key}", getattr(self, key), "allowed: >= 1")
        require(self.sink_time_clamp_max >= self.sink_time_clamp_min, "method.sink_time_clamp_max",
                self.sink_time_clamp_max, f"allowed: >= method.sink_time_clamp_min={self.sink_time_clamp_min}")
        for key in ("budget_frames", "budget_tokens"):
            if getattr(self, key) is not None:
                require(getattr(self, key) >= 0, f"method.{key}", getattr(self, key),
                        "allowed: >= 0, or null (the published allocation)")
        if self.labels is not None:
            ok = (len(self.labels) > 0 and all(len(layer) > 0 for layer in self.labels)
                  and len({len(layer) for layer in self.labels}) == 1
                  and all(r in LABELS for layer in self.labels for r in layer))
            require(ok, "method.labels", self.labels,
                    f"allowed: a list of layers, each a list of {', '.join(LABELS)} per head, or null (role_map)")

    # -- per class ------------------------------------------------------------------------
    def sinks(self) -> torch.Tensor:
        """[3] sink frames of Anchor, Wave, Veil heads."""
        return torch.tensor([self.anchor_sink_frames, self.wave_sink_frames, self.veil_sink_frames])

    def recents(self) -> torch.Tensor:
        """[3] recent-pool frames (the chunk being generated included) of Anchor, Wave, Veil."""
        return torch.tensor([self.anchor_recent_frames, self.wave_recent_frames, self.veil_recent_frames])

    def head_labels(self, geometry: Geometry) -> torch.Tensor:
        """[L, H] int64 class of every head (ANCHOR / WAVE / VEIL), from ``labels`` or ``role_map``."""
        if self.labels is not None:
            names, key, value = self.labels, "method.labels", "inline labels"
        else:
            names = read_pyramid_labels(existing_file(self.role_map, "method.role_map"))["roles"]
            key, value = "method.role_map", repr(self.role_map)
        shape = (len(names), len(names[0]))
        if shape != (geometry.layers, geometry.heads):
            raise ConfigError(f"{key}={value} has {shape[0]} x {shape[1]} heads; the model has "
                              f"{geometry.layers} x {geometry.heads}")
        return torch.tensor([[CODES[r] for r in layer] for layer in names])

    def allowed_entries(self, geometry: Geometry) -> int | None:
        """The budget as entries over all layers and heads (budget_tokens wins), or None."""
        if self.budget_tokens is not None:
            return self.budget_tokens
        if self.budget_frames is not None:
            return self.budget_frames * geometry.kv_entries_per_frame
        return None

    def stored_bound(self, geometry: Geometry, labels: torch.Tensor, bucket_cap: int, stride_capacity: int,
                     merge_capacity: int) -> int:
        """Upper bound of the entries stored over all layers and heads at any time (module doc)."""
        g, tpf = geometry, geometry.tokens_per_frame
        counts = [int((labels == c).sum()) for c in (ANCHOR, WAVE, VEIL)]
        recent = [max(0, int(r) - g.frames_per_chunk) for r in self.recents()]
        anchor = (self.anchor_sink_frames + stride_capacity + recent[ANCHOR]) * tpf
        wave = (self.wave_sink_frames + self.cyclic_period * bucket_cap + recent[WAVE]) * tpf
        veil = (self.veil_sink_frames + recent[VEIL]) * tpf
        if merge_capacity and counts[VEIL]:
            veil += (merge_capacity + 1) * len(merge_grid(g, self.merge_patch_size)[1])
        return counts[ANCHOR] * anchor + counts[WAVE] * wave + counts[VEIL] * veil

    def allocation(self, geometry: Geometry, labels: torch.Tensor) -> Allocation:
        """The published middle capacities, or under a budget the largest common scale of them
        whose stored-entry bound fits (module doc, Budget)."""
        caps = (self.cyclic_bucket_cap, self.stride_capacity, self.merge_capacity)
        allowed = self.allowed_entries(geometry)
        if allowed is None:
            return Allocation(*caps, self.stored_bound(geometry, labels, *caps))

        def scaled(lam: float) -> tuple[int, int, int]:
            return tuple(int(math.floor(lam * c + 1e-9)) for c in caps)

        least = self.stored_bound(geometry, labels, 0, 0, 0)
        if least > allowed:
            key, value = (("method.budget_tokens", self.budget_tokens) if self.budget_tokens is not None
                          else ("method.budget_frames", self.budget_frames))
            need = least / geometry.kv_entries_per_frame
            raise ConfigError(f"{key}={value}: the sinks and recent pools alone need {need:g} frames a head on "
                              f"average; allowed: >= {math.ceil(need)} frames a head, or null (the published allocation)")
        lo, hi = 0.0, allowed / geometry.tokens_per_frame + 1.0
        for _ in range(60):
            mid = (lo + hi) / 2
            if self.stored_bound(geometry, labels, *scaled(mid)) <= allowed:
                lo = mid
            else:
                hi = mid
        bucket, stride, merge = scaled(lo)
        return Allocation(bucket, stride, merge, self.stored_bound(geometry, labels, bucket, stride, merge))

    def check(self, geometry: Geometry, max_frames: int) -> None:
        g = geometry
        require(self.sink_time_clamp_max <= g.horizon_frames, "method.sink_time_clamp_max", self.sink_time_clamp_max,
                f"the sink sits at most this many frames before the query; allowed: <= the trained horizon of "
                f"{g.horizon_frames} frames")
        for name in LABELS:
            key = f"{name}_recent_frames"
            require(getattr(self, key) >= g.frames_per_chunk, f"method.{key}", getattr(self, key),
                    f"the recent pool holds the chunk being generated; allowed: >= {g.frames_per_chunk} frames")
        labels = self.head_labels(g)
        if self.merge_capacity and bool((labels == VEIL).any()):
            merge_grid(g, self.merge_patch_size)
        self.allocation(g, labels)


@METHODS.register("pyramid_forcing", config=PyramidForcingConfig)
class PyramidForcing(CacheMethod):
    config: PyramidForcingConfig

    def __init__(self, config: PyramidForcingConfig, geometry: Geometry, **kwargs) -> None:
        self.labels = config.head_labels(geometry)  # [L, H]
        self.alloc = config.allocation(geometry, self.labels)
        self.block_frames = config.merge_patch_size ** 2
        self.group: torch.Tensor | None = None
        if self.alloc.merge_capacity and bool((self.labels == VEIL).any()):
            self.group, self.group_first = merge_grid(geometry, config.merge_patch_size)
        self._sink, self._recent = config.sinks(), config.recents()
        super().__init__(config, geometry, **kwargs)

    # -- per entry --------------------------------------------------------------------------
    def _classes(self, layer: int, store: LayerStore) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per entry [N]: class, sink frames and recent-pool frames of its head."""
        cls = self.labels[layer].to(store.head.device)[store.head]
        return cls, self._sink.to(cls.device)[cls], self._recent.to(cls.device)[cls]

    def _stride_fifo(self, frame: torch.Tensor, written: int) -> torch.Tensor:
        """[N] bool: frame is one of the ``stride_capacity`` latest aligned frames below ``written``."""
        cap, step = self.alloc.stride_capacity, self.config.stride_interval
        if cap == 0 or written == 0:
            return torch.zeros_like(frame, dtype=torch.bool)
        last = (written - 1) // step * step
        return (frame % step == 0) & (frame < written) & (frame >= last - step * (cap - 1))

    def _block_alive(self, block: torch.Tensor, written: int) -> torch.Tensor:
        """[N] bool: the block is among the ``merge_capacity`` newest completed ones below
        ``written`` frames, or the one being filled."""
        return block > written // self.block_frames - 1 - self.alloc.merge_capacity

    def _median(self, block: torch.Tensor) -> torch.Tensor:
        return block * self.block_frames + (self.block_frames - 1) // 2

    # -- what stays ------------------------------------------------------------------------
    def evict(self, layer: int, store: LayerStore) -> None:
        written, F = self.frames_written, self.geometry.frames_per_chunk
        cls, sink_n, recent_n = self._classes(layer, store)
        raw = store.kind != KIND_MERGED
        tail_min = written + F - recent_n  # the next chunk's recent pool: its last frame - recent + 1
        if self.group is not None:  # Veil frames leaving the recent pool fold into their block
            block = store.frame // self.block_frames
            fold = (cls == VEIL) & raw & (store.frame >= sink_n) & (store.frame < tail_min)
            fold &= self._block_alive(block, written) & (self._median(block) >= sink_n)
            self._fold(layer, store, fold)
            cls, sink_n, recent_n = self._classes(layer, store)
            raw = store.kind != KIND_MERGED
            tail_min = written + F - recent_n
        sink = raw & (store.frame < sink_n)
        store.kind[sink] = KIND_SINK
        keep = sink | (raw & (store.frame >= tail_min))
        ring = self.config.cyclic_period * self.alloc.bucket_cap
        keep |= (cls == WAVE) & raw & (store.frame >= written - ring)
        keep |= (cls == ANCHOR) & raw & self._stride_fifo(store.frame, written)
        if self.group is not None:
            keep |= (cls == VEIL) & ~raw & self._block_alive(store.frame // self.block_frames, written)
        store.keep(keep)

    def _fold(self, layer: int, store: LayerStore, fold: torch.Tensor) -> None:
        """Merge the raw entries ``fold`` [N] (Veil heads) into their blocks' merged tokens:
        per head, block and spatial patch, the weighted mean of the keys and values already
        merged and the new ones; weights add."""
        if not bool(fold.any()):
            return
        veil = (self.labels[layer] == VEIL).to(store.head.device)  # [H]
        rank = veil.long().cumsum(0) - 1
        n_veil, n_groups = int(veil.sum()), len(self.group_first)
        blocks = torch.unique(store.frame[fold] // self.block_frames)
        old = (store.kind == KIND_MERGED) & veil[store.head] & torch.isin(store.frame // self.block_frames, blocks)
        idx = (fold | old).nonzero().flatten()
        block = torch.searchsorted(blocks, store.frame[idx] // self.block_frames)
        group = self.group.to(idx.device)[store.spatial[idx]]
        key = (block * n_veil + rank[store.head[idx]]) * n_groups + group
        weight = store.weight[idx]
        B, D = store.k.shape[0], store.k.shape[2]
        total = len(blocks) * n_veil * n_groups
        k_sum = torch.zeros(B, total, D, device=idx.device).index_add_(1, key, store.k[:, idx].float() * weight[:, None])
        v_sum = torch.zeros(B, total, D, device=idx.device).index_add_(1, key, store.v[:, idx].float() * weight[:, None])
        w_sum = torch.zeros(total, device=idx.device).index_add_(0, key, weight).view(len(blocks), n_veil, n_groups)
        k_sum, v_sum = (x.view(B, len(blocks), n_veil, n_groups, D) for x in (k_sum, v_sum))
        store.keep(~(fold | old))
        if not bool((w_sum == w_sum[:, :1]).all()):  # every Veil head of a layer folds the same frames
            raise RuntimeError(f"pyramid_forcing: Veil heads of layer {layer} hold different frames")
        present = (w_sum[:, 0] > 0).nonzero()  # [M, 2]: (block, patch) of every merged token
        j, p = present[:, 0], present[:, 1]
        w = w_sum[j, :, p]  # [M, n_veil]
        k = torch.zeros(B, store.heads, len(j), D, dtype=store.k.dtype, device=idx.device)
        v = torch.zeros_like(k)
        for out, total in ((k, k_sum), (v, v_sum)):  # [B, blocks, n_veil, patches, D] -> [B, n_veil, M, D]
            out[:, veil] = (total.permute(1, 3, 0, 2, 4)[j, p] / w[:, None, :, None]).permute(1, 2, 0, 3).to(out.dtype)
        store.append(k, v, self._median(blocks[j]), self.group_first[p.cpu()], kind=KIND_MERGED, heads=veil,
                     weight=w[:, 0])

    # -- what each head reads, and where -------------------------------------------------------
    def visible(self, layer: int, store: LayerStore, chunk_start: int) -> torch.Tensor:
        """[N] bool: the entries the chunk at ``chunk_start`` reads (module doc)."""
        F, c = self.geometry.frames_per_chunk, self.config
        cls, sink_n, recent_n = self._classes(layer, store)
        raw, frame = store.kind != KIND_MERGED, store.frame
        tail_min = chunk_start + F - recent_n
        sink = raw & (frame < sink_n)
        middle = raw & ~sink & (frame < tail_min)
        lag = chunk_start + torch.arange(F, device=frame.device)[:, None] - frame[None]  # [F, N]
        bucket = ((lag % c.cyclic_period == 0) & (lag > 0) & (lag <= c.cyclic_period * self.alloc.bucket_cap)).any(0)
        seen = sink | (raw & (frame >= tail_min))
        seen |= (cls == WAVE) & middle & bucket
        seen |= (cls == ANCHOR) & middle & self._stride_fifo(frame, chunk_start)
        if self.group is not None:
            block = frame // self.block_frames
            complete = ((block + 1) * self.block_frames <= chunk_start) & self._block_alive(block, chunk_start)
            seen |= ((cls == VEIL) & ~raw & complete & ((block + 1) * self.block_frames <= tail_min)
                     & (self._median(block) >= sink_n))
        return seen

    def sync_frame(self, chunk_start: int) -> int:
        """The window_clamp time of the sink for the chunk (from its last frame)."""
        last = chunk_start + self.geometry.frames_per_chunk - 1
        c = self.config
        return max(0, last - min(max(last, c.sink_time_clamp_min), c.sink_time_clamp_max))

    def positions(self, layer: int, store: LayerStore, chunk_start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pos [N], q_pos [H, F]) for the entries of ``store`` (the visible ones), shifted by -sync."""
        F, c = self.geometry.frames_per_chunk, self.config
        sync = self.sync_frame(chunk_start)
        cls, sink_n, recent_n = self._classes(layer, store)
        raw, frame = store.kind != KIND_MERGED, store.frame
        sink = raw & (frame < sink_n)
        middle = raw & ~sink & (frame < chunk_start + F - recent_n)
        at_sync = sink | (middle & (cls == WAVE) & c.cyclic_dynamic_rope) | (middle & (cls == ANCHOR) & c.stride_dynamic_rope)
        pos = torch.where(at_sync, sync, frame).clamp(min=sync) - sync
        q_pos = (chunk_start + torch.arange(F, device=frame.device) - sync).expand(self.geometry.heads, -1)
        return pos, q_pos

    def views(self, chunk_start: int) -> list[RaggedKV]:
        out = []
        for layer, store in enumerate(self.layers):
            seen = self.visible(layer, store, chunk_start)
            part = store if bool(seen.all()) else store.filtered(seen)
            view = part.view(*self.positions(layer, part, chunk_start))
            if not self.config.merge_bias:
                view.bias = None
            out.append(view)
        return out


def published_mean_frames(config: PyramidForcingConfig, geometry: Geometry) -> float:
    """The published allocation's stored-entry bound as mean frames a head (for reports)."""
    labels = config.head_labels(geometry)
    return config.allocation(geometry, labels).bound_entries / geometry.kv_entries_per_frame


__all__ = ["ANCHOR", "VEIL", "WAVE", "PyramidForcing", "PyramidForcingConfig", "merge_grid", "published_mean_frames"]
