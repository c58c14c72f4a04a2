"""The cache store and the interface every KV-cache method implements.

Per layer, the cache is one ``LayerStore``: each head's entries packed head after head
(heads may keep different entries, so lengths differ). An entry is a key (spatial RoPE
applied, no temporal rotation), a value, and metadata: source frame, spatial index
(token within the frame), kind (raw / sink / merged) and weight (how many raw entries it
stands for). Within a head, entries are kept in time order.

A method answers two questions (docs/design.md):
  - ``views(chunk_start)``: what each head of each layer attends to now, and at which
    temporal positions (``positions``);
  - ``write(kv, chunk_start)``: a clean chunk was written; store it, then ``evict``.
It is also told about prompt switches (``on_prompt_switch``) and can ask to see
attention mass (``needs_attention_mass`` / ``observe_attention``) and statistics of
its cache entries' pre-softmax logits (``needs_attention_logits`` / ``observe_logits``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields

import torch

from core.errors import ConfigError
from core.geometry import Geometry
from core.registry import MISSING, Registry
from kernels import LogitStats, RaggedKV

METHODS = Registry("method")

KIND_RAW, KIND_SINK, KIND_MERGED = 0, 1, 2
KIND_NAMES = {KIND_RAW: "raw", KIND_SINK: "sink", KIND_MERGED: "merged"}


class LayerStore:
    """Packed per-head cache entries of one layer.

    k, v: [B, N, D]; frame, spatial, head: [N] int64; kind: [N] int8; weight: [N] float32
    (raw entries a merged entry stands for); score: [N] float32 (attention an entry has
    received, for score-based methods); offsets: [H + 1] int64 on the CPU. Tensors are reallocated (not viewed) when entries
    are dropped, so ``nbytes`` is what is really allocated.
    """

    def __init__(self, heads: int, batch: int, head_dim: int, dtype: torch.dtype, device: torch.device):
        self.heads = heads
        self.k = torch.empty(batch, 0, head_dim, dtype=dtype, device=device)
        self.v = torch.empty_like(self.k)
        self.frame = torch.empty(0, dtype=torch.long, device=device)
        self.spatial = torch.empty_like(self.frame)
        self.head = torch.empty_like(self.frame)
        self.kind = torch.empty(0, dtype=torch.int8, device=device)
        self.weight = torch.empty(0, dtype=torch.float32, device=device)
        self.score = torch.empty(0, dtype=torch.float32, device=device)
        self.offsets = torch.zeros(heads + 1, dtype=torch.long)

    def __len__(self) -> int:
        return self.frame.numel()

    def lengths(self) -> torch.Tensor:
        """Entries per head, [H] int64."""
        return self.offsets[1:] - self.offsets[:-1]

    def head_slice(self, h: int) -> slice:
        return slice(int(self.offsets[h]), int(self.offsets[h + 1]))

    def nbytes(self) -> int:
        """Bytes allocated for keys and values."""
        return self.k.untyped_storage().nbytes() + self.v.untyped_storage().nbytes()

    def _take(self, index: torch.Tensor) -> None:
        for name in ("k", "v"):
            setattr(self, name, getattr(self, name).index_select(1, index))
        for name in ("frame", "spatial", "head", "kind", "weight", "score"):
            setattr(self, name, getattr(self, name).index_select(0, index))
        self._count_heads()

    def _count_heads(self) -> None:
        counts = torch.bincount(self.head.cpu(), minlength=self.heads)
        self.offsets = torch.cat((torch.zeros(1, dtype=torch.long), counts.cumsum(0)))

    def append(self, k: torch.Tensor, v: torch.Tensor, frame: torch.Tensor, spatial: torch.Tensor,
               kind: int = KIND_RAW, heads: torch.Tensor | None = None,
               weight: torch.Tensor | None = None) -> None:
        """Append new entries at the end of each selected head's segment.

        k, v: [B, H, n, D]; frame, spatial: [n]; heads: [H] bool (default: all heads);
        weight: [n] raw entries each new entry stands for (default 1).
        """
        B, H, n, D = k.shape
        sel = torch.arange(H, device=k.device) if heads is None else heads.nonzero().flatten().to(k.device)
        m = sel.numel()
        w = torch.ones(n) if weight is None else weight.float().cpu()
        self.extend(k[:, sel].reshape(B, m * n, D), v[:, sel].reshape(B, m * n, D), frame.repeat(m),
                    spatial.repeat(m), sel.repeat_interleave(n), kind, w.repeat(m))

    def extend(self, k: torch.Tensor, v: torch.Tensor, frame: torch.Tensor, spatial: torch.Tensor,
               head: torch.Tensor, kind: int, weight: torch.Tensor) -> None:
        """Append entries each to the end of its head's segment, in the given order.

        k, v: [B, n, D]; frame, spatial, head: [n] int64; weight: [n] (raw entries each stands for).
        """
        self.keep_and_extend(torch.ones(len(self), dtype=torch.bool, device=self.frame.device), k, v, frame,
                             spatial, head, kind, weight)

    def keep_and_extend(self, mask: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frame: torch.Tensor,
                        spatial: torch.Tensor, head: torch.Tensor, kind: int, weight: torch.Tensor) -> None:
        """``keep(mask)`` then ``extend(...)`` (same arguments), gathering every field once."""
        kept = mask.nonzero().flatten()
        n = head.numel()
        order = torch.argsort(torch.cat((self.head[kept], head.to(self.head.device))), stable=True)
        source = torch.cat((kept, len(self) + torch.arange(n, device=kept.device)))[order]
        dev = self.frame.device
        new = {"k": k, "v": v, "frame": frame.to(dev), "spatial": spatial.to(dev), "head": head.to(dev),
               "kind": torch.full((n,), kind, dtype=torch.int8, device=dev), "weight": weight.float().to(dev),
               "score": torch.zeros(n, device=dev)}
        for name, value in new.items():
            dim = 1 if name in ("k", "v") else 0
            setattr(self, name, torch.cat((getattr(self, name), value), dim=dim).index_select(dim, source))
        self._count_heads()

    def keep(self, mask: torch.Tensor) -> None:
        """Drop every entry where ``mask`` [N] is False."""
        if bool(mask.all()):
            return
        self._take(mask.nonzero().flatten())

    def filtered(self, mask: torch.Tensor) -> LayerStore:
        """A copy holding only the entries where ``mask`` [N] is True."""
        out = copy.copy(self)
        out._take(mask.nonzero().flatten())
        return out

    def view(self, pos: torch.Tensor, q_pos: torch.Tensor) -> RaggedKV:
        """What the kernel reads; merged entries get a log-weight logit bias so that an entry
        standing for w raw entries receives the attention mass w copies would."""
        merged = bool((self.weight != 1).any())
        bias = torch.log(self.weight) if merged else None
        return RaggedKV(self.k, self.v, pos, self.offsets, q_pos, bias)


@dataclass
class MethodConfig:
    """Base of every method config; ``name`` selects the registered method, ``label`` (default:
    the name) is how tables and the leaderboard show it (e.g. an ablation ``hf[no_episodic]``)."""

    name: str = MISSING
    label: str | None = None

    def __post_init__(self) -> None:
        if self.name not in METHODS:
            raise ConfigError(
                f"method.name={self.name!r} is not a registered method; allowed: {', '.join(METHODS.names())}"
            )

    def check(self, geometry: Geometry, max_frames: int) -> None:
        """Checks that need the backbone's geometry and the longest rollout (frames)."""

    @property
    def shown_name(self) -> str:
        return self.label or self.name

    def params(self) -> dict:
        """The method's full parameters, for records and run keys."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class CacheStats:
    """tokens: [L, H] entries kept per layer and head; kv_bytes: allocated K+V bytes."""

    tokens: torch.Tensor
    kv_bytes: int


class CacheMethod:
    """Base cache method: stores every clean chunk, evicts nothing, absolute positions.

    Subclasses override ``evict`` (what stays), ``positions`` (where it sits in time),
    and optionally ``on_prompt_switch`` / ``observe_attention``.
    """

    needs_attention_mass = False
    needs_attention_logits = False
    # Sweep presets select methods by these (``${methods:headline}``, bench/config.py); a class's own
    # tags count, not inherited ones. Controls and methods whose config has a budget need no tag.
    tags: tuple[str, ...] = ()

    def __init__(self, config: MethodConfig, geometry: Geometry, batch: int = 1,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.config = config
        self.geometry = geometry
        self.batch, self.dtype, self.device = batch, dtype, torch.device(device)
        self.reset()

    def reset(self) -> None:
        g = self.geometry
        self.layers = [LayerStore(g.heads, self.batch, g.head_dim, self.dtype, self.device)
                       for _ in range(g.layers)]
        self.frames_written = 0

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.params().items() if k != "name")
        return f"{type(self).__name__}({params})"

    # -- what each head attends to, and where ---------------------------------------------
    def chunk_frames(self, chunk_start: int) -> torch.Tensor:
        return torch.arange(chunk_start, chunk_start + self.geometry.frames_per_chunk, device=self.device)

    def positions(self, layer: int, store: LayerStore, chunk_start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(pos [N], q_pos [H, F]): temporal positions of cache entries and of the chunk."""
        q = self.chunk_frames(chunk_start).expand(self.geometry.heads, -1)
        return store.frame, q

    def views(self, chunk_start: int) -> list[RaggedKV]:
        out = []
        for layer, store in enumerate(self.layers):
            pos, q_pos = self.positions(layer, store, chunk_start)
            out.append(store.view(pos, q_pos))
        return out

    # -- updates ---------------------------------------------------------------------------
    def chunk_entries(self, chunk_start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(frame, spatial) [F * tpf] of the chunk's tokens, frame after frame."""
        g = self.geometry
        n = g.frames_per_chunk * g.tokens_per_frame
        token = torch.arange(n, device=self.device)
        return chunk_start + token // g.tokens_per_frame, token % g.tokens_per_frame

    def write(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        """Store a clean chunk's k, v (per layer [B, H, F * tpf, D]) and evict."""
        frame, spatial = self.chunk_entries(chunk_start)
        self.frames_written = chunk_start + self.geometry.frames_per_chunk
        for layer, (store, (k, v)) in enumerate(zip(self.layers, kv)):
            store.append(k.to(self.dtype), v.to(self.dtype), frame, spatial)
            self.evict(layer, store)

    def evict(self, layer: int, store: LayerStore) -> None:
        """Decide what stays after a write (``self.frames_written`` frames so far)."""

    def on_prompt_switch(self, chunk_start: int, prompt: str) -> None:
        """The prompt changes at ``chunk_start``; the backbone's context is replaced."""

    def recache_chunks(self) -> list[int]:
        """After a prompt switch: starts of earlier chunks whose K/V the rollout should
        recompute under the new prompt (then passed to ``recache``). Default: none."""
        return []

    def recache(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        """Replace stored K/V of the chunk at ``chunk_start`` by a recomputation."""
        raise NotImplementedError(f"{type(self).__name__} asked for a re-cache it cannot store")

    def views_before(self, chunk_start: int) -> list[RaggedKV]:
        """Views holding only entries of frames before ``chunk_start`` (for re-caching it)."""
        out = []
        for layer, store in enumerate(self.layers):
            part = store.filtered(store.frame < chunk_start)
            pos, q_pos = self.positions(layer, part, chunk_start)
            out.append(part.view(pos, q_pos))
        return out

    def observe_attention(self, layer: int, mass: torch.Tensor) -> None:
        """Attention mass [N] of the layer's cache entries (if needs_attention_mass)."""

    def observe_logits(self, layer: int, stats: LogitStats) -> None:
        """Pre-softmax logit statistics of the layer's cache entries in one attention call
        (if needs_attention_logits): ``stats.logit_sum`` / ``stats.positive`` [F, N], per
        query frame of the chunk (kernels/reference.py, LogitStats)."""

    def stats(self) -> CacheStats:
        tokens = torch.stack([s.lengths() for s in self.layers])
        return CacheStats(tokens=tokens, kv_bytes=sum(s.nbytes() for s in self.layers))


def build_method(config: MethodConfig, geometry: Geometry, **kwargs) -> CacheMethod:
    return METHODS.build(config.name, config, geometry, **kwargs)
