"""Rolling Sink: past the trained horizon, replay the first frames forward and back as the history.

Li, Liu, Lin, Chandraker, "Rolling Sink: Bridging Limited-Horizon Training and Open-Ended
Testing in Autoregressive Video Diffusion", arXiv 2602.07775. Training-free, built on Self
Forcing; no head split (every head and layer keeps and sees the same frames).

What the method does (from the authors' code, github.com/haodong2000/RollingSink,
``wan/modules/causal_model.py``, the block marked "Rolling Sink"):
  - the self-attention cache is a rolling window of T = 21 latent frames (Wan's trained
    horizon; ``local_attn_size=-1`` gives 32760 = 21 x 1560 tokens, ``sink_size=0``), i.e.
    the chunk being generated plus the T - F = 18 frames before it (F = 3 frames a chunk);
  - the keys of the first T frames are also kept without rotation (``k_original``);
  - from the chunk that starts at frame T on, after its clean pass (t = 0) the slot of the
    *previous* chunk is overwritten by an F-frame block of the un-rotated first frames,
    rotated at that slot's position: slot start t (an absolute frame, t >= T - F) gets
    frames [t mod P, t mod P + F) on even laps (t // P even) and the same span taken
    backwards, P - (t mod P) - 1 down to P - (t mod P) - F, on odd laps, with the sweep
    span P = T - F = 18. The first replayed slot (t = 18) is on lap 1, so the replay
    starts with frames 17, 16, 15, continuing backwards from the real frames 15..17 just
    before it, down to 2, 1, 0, then forward 0, 1, 2 ... 15, 16, 17, and so on. Frames
    T - F..T - 1 are stored un-rotated but never replayed;
  - so from frame T + F on, each chunk attends to (T - 2F) = 15 replayed frames, the real
    previous chunk and itself, all at contiguous positions ("Sliding Indices" and "Sliding
    Semantics" in the paper's terms); the pointer is fixed, not content-driven.

forcebench's version. Slot p of the timeline (a frame index) shows source frame
``sweep_frame(p, R)`` = p mod R on even laps and R - 1 - p mod R on odd ones, the
frame-level form of the block rule above (identical to it when R is a multiple of F, as at
the default); below R it is p itself, so the first frames are their own history. The chunk
at frame s attends to the slots max(0, s - R) .. s - F - 1 (replayed) and the real
previous chunk s - F .. s - 1, at positions 0..W-1 (W = min(s, R)), the chunk itself at
W..W+F-1: always inside the trained horizon. Stored per head and layer: the first R frames
(never evicted, kind ``sink``) plus the last chunk written, so the replayed blocks are not
stored twice; each chunk's view gathers its window from them (a transient copy for that
chunk's forwards; a slot shown twice near a turn of the sweep is gathered twice). The
authors' code holds 2 x 21 frames (the rotated window and the un-rotated copy).

Budget. ``budget_frames`` B counts stored frames per head (the chunk being generated not
counted), as for every bounded method: R = B - F replayed source frames + the previous
chunk, so allocated KV bytes are exactly B frames a head once the rollout is past frame
R + F, and the attended window is R frames. Default B = 21: R = 18 = T - F and the window
is the published one. Scaling to the toy: its horizon is Wan's 21 latent frames in chunks
of 3, so the published numbers are used unchanged (on the tiny test backbone, horizon 9,
the same rule gives B = 9, R = 6). At ``sweep=equal_budget``'s B = 16: R = 13, a 13-frame
window (10 replayed + 3 real) sweeping over frames 0..12 (not a multiple of F: a block can
straddle a turn, e.g. 12, 12, 11). Allowed: 2F <= B <= T (the window plus the chunk must
fit the trained horizon). Positions are repacked only (every kept key is re-rotated). At a
prompt switch nothing changes (the paper leaves multi-shot generation to future work).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from core.errors import require
from core.geometry import Geometry
from kernels import RaggedKV
from methods.base import KIND_SINK, METHODS, CacheMethod, LayerStore
from methods.bounded import BoundedConfig


@dataclass
class RollingSinkConfig(BoundedConfig):
    name: str = "rolling_sink"
    budget_frames: int = 21
    positions: str = "repacked"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.positions == "repacked", "method.positions", self.positions,
                "rolling_sink re-rotates every key to the window's positions; allowed: repacked")

    def replay_frames(self, geometry: Geometry) -> int:
        """R: the first frames kept for replay (the budget less the real previous chunk)."""
        return self.frames(geometry) - geometry.frames_per_chunk

    def check(self, geometry: Geometry, max_frames: int) -> None:
        F, T = geometry.frames_per_chunk, geometry.horizon_frames
        key, value = (("method.budget_tokens", self.budget_tokens) if self.budget_tokens is not None
                      else ("method.budget_frames", self.budget_frames))
        frames = self.frames(geometry)
        require(2 * F <= frames <= T, key, value,
                f"rolling_sink stores {frames} frames a head: the replayed first frames plus one chunk of {F}, "
                f"whose window and the chunk being generated must fit the trained horizon of {T} frames; "
                f"allowed: {2 * F} to {T} frames a head")


def sweep_frame(slot: torch.Tensor, span: int) -> torch.Tensor:
    """Source frame replayed at timeline slot(s) ``slot``: forward over 0..span-1 on even
    laps, backward on odd ones (slot < span gives the slot itself)."""
    lap, offset = slot // span, slot % span
    return torch.where(lap % 2 == 0, offset, span - 1 - offset)


@METHODS.register("rolling_sink", config=RollingSinkConfig)
class RollingSink(CacheMethod):
    config: RollingSinkConfig

    def evict(self, layer: int, store: LayerStore) -> None:
        replay = store.frame < self.config.replay_frames(self.geometry)
        store.kind[replay] = KIND_SINK
        store.keep(replay | (store.frame >= self.frames_written - self.geometry.frames_per_chunk))

    def window(self, chunk_start: int) -> torch.Tensor:
        """[W] the source frame shown at each slot the chunk at ``chunk_start`` attends to,
        oldest first (W = min(chunk_start, R)); the last F slots are the real previous chunk."""
        R, F = self.config.replay_frames(self.geometry), self.geometry.frames_per_chunk
        slots = torch.arange(max(0, chunk_start - R), chunk_start, device=self.device)
        return torch.where(slots < chunk_start - F, sweep_frame(slots, R), slots)

    def _gather_index(self, store: LayerStore, frames: torch.Tensor) -> torch.Tensor:
        """[H * W * tokens_per_frame] entries of ``frames`` in every head, head after head."""
        tpf = self.geometry.tokens_per_frame
        lengths = store.lengths()
        if not bool((lengths == lengths[0]).all()):
            raise RuntimeError(f"rolling_sink expects every head to hold the same frames; lengths {lengths.tolist()}")
        held = store.frame[store.head_slice(0)][::tpf].contiguous()  # [n] one per frame, in time order
        rank = torch.searchsorted(held, frames)
        if len(frames) and not torch.equal(held[rank.clamp(max=len(held) - 1)], frames):
            raise RuntimeError(f"rolling_sink's window {frames.tolist()} is not in its store {held.tolist()}")
        within = (rank[:, None] * tpf + torch.arange(tpf, device=rank.device)).flatten()
        return (store.offsets[:-1].to(within.device)[:, None] + within[None]).flatten()

    def views(self, chunk_start: int) -> list[RaggedKV]:
        g = self.geometry
        frames = self.window(chunk_start)
        W, n = len(frames), len(frames) * g.tokens_per_frame
        pos = torch.arange(W, device=self.device).repeat_interleave(g.tokens_per_frame).repeat(g.heads)
        q_pos = (W + torch.arange(g.frames_per_chunk, device=self.device)).expand(g.heads, -1)
        offsets = torch.arange(g.heads + 1) * n
        out = []
        for store in self.layers:
            index = self._gather_index(store, frames).to(store.k.device)
            out.append(RaggedKV(store.k.index_select(1, index), store.v.index_select(1, index), pos, offsets, q_pos))
        return out
