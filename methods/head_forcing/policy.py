"""Head Forcing: a cache per head role, episodic memory for memory heads, head-wise RoPE re-encoding.

Roles come from a profile (results/head_roles/<model>.json, ``forcebench profile``):
  local heads   keep the last ``local_frames`` frames;
  anchor heads  keep the first ``anchor_sink_frames`` frames plus the last ``anchor_window_frames``;
  memory heads  keep the last ``memory_window_frames`` frames plus an episodic memory of
                everything older (methods/head_forcing/memory.py), with as many episodes
                as the budget leaves (``budget_frames`` is the mean cached frames per head,
                the same unit as the bounded baselines, so methods compare at equal KV bytes).
When re-encoding caps the memory heads (every head's positions must fit the horizon), the
budget left widens the local and anchor windows, so the whole budget is spent.
Head-wise RoPE re-encoding gives each head's entries the positions 0..n-1 in time order
(sink, episodes, window) and the current chunk the next ones, inside the trained horizon.
At a prompt switch local and anchor heads re-cache their window under the new prompt
(LongLive-style: the rollout recomputes those frames' K/V); memory keeps its episodes.

Ablations (one override each): rope_reencode=false, episodic=false (memory heads become
windows of the same size), roles=all_local|all_anchor|all_memory, roles=shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from core.errors import ConfigError, require
from core.geometry import Geometry
from methods.base import (
    KIND_MERGED,
    KIND_RAW,
    KIND_SINK,
    METHODS,
    CacheMethod,
    LayerStore,
)
from methods.bounded import BudgetConfig, check_absolute_fits, repacked_positions
from methods.head_forcing.memory import EpisodeTable, EpisodicMemory
from methods.roles import TOY_ROLE_MAP, existing_role_map, load_role_map

ROLE_MODES = ("profiled", "all_local", "all_anchor", "all_memory", "shuffled")
ROLE_CODES = {"local": 0, "anchor": 1, "memory": 2}  # a head's role as a number, for tensor masks


@dataclass(frozen=True)
class Allocation:
    """Frames per head of each role after the budget is split (episodes count one frame each)."""

    local_frames: int
    anchor_window_frames: int
    memory_window_frames: int
    episodes: int


@dataclass
class HeadForcingConfig(BudgetConfig):
    name: str = "head_forcing"
    role_map: str = TOY_ROLE_MAP
    roles: str = "profiled"
    shuffle_seed: int = 0
    local_frames: int = 3
    anchor_sink_frames: int = 3
    anchor_window_frames: int = 3
    memory_window_frames: int = 6
    episode_threshold: float = 0.25
    episode_max_frames: int = 12
    episodic: bool = True
    rope_reencode: bool = True
    recache_on_switch: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.roles in ROLE_MODES, "method.roles", self.roles, f"allowed: {', '.join(ROLE_MODES)}")
        for key in ("local_frames", "anchor_sink_frames", "anchor_window_frames",
                    "memory_window_frames", "episode_max_frames"):
            require(getattr(self, key) >= 0, f"method.{key}", getattr(self, key), "allowed: >= 0")
        require(0 <= self.episode_threshold <= 2, "method.episode_threshold", self.episode_threshold,
                "a cosine distance; allowed: 0..2")

    def load_roles(self, geometry: Geometry) -> np.ndarray:
        """[L, H] role names, from the role map or the ablation setting."""
        L, H = geometry.layers, geometry.heads
        if self.roles.startswith("all_"):
            return np.full((L, H), self.roles[4:], dtype=object)
        file = existing_role_map(self.role_map)
        roles = np.array(load_role_map(file)["roles"], dtype=object)
        if roles.shape != (L, H):
            raise ConfigError(f"method.role_map={self.role_map!r} has {roles.shape[0]} x {roles.shape[1]} heads; "
                              f"the model has {L} x {H}")
        if self.roles == "shuffled":
            flat = roles.flatten()
            np.random.default_rng(self.shuffle_seed).shuffle(flat)
            roles = flat.reshape(L, H)
        return roles

    def allocate(self, geometry: Geometry, roles: np.ndarray) -> Allocation:
        """Split the total budget over the roles so that Head Forcing spends what the baselines spend.

        Memory heads get their window plus as many episodes as the budget leaves (with
        re-encoding at most what keeps positions inside the trained horizon). Budget still
        left then widens the local and anchor windows equally (again inside the horizon).
        """
        total = self.total_frames(geometry)
        n = {r: int((roles == r).sum()) for r in ("local", "anchor", "memory")}
        room = geometry.horizon_frames - geometry.frames_per_chunk if self.rope_reencode else total
        used = n["local"] * self.local_frames + n["anchor"] * (self.anchor_sink_frames + self.anchor_window_frames)
        episodes = 0
        if n["memory"]:
            episodes = (total - used) // n["memory"] - self.memory_window_frames
            if episodes < 0:
                raise ConfigError(f"method.budget_frames={self.budget_frames}: too small for the local and anchor "
                                  f"caches and memory windows of this role map")
            episodes = min(episodes, room - self.memory_window_frames)
            used += n["memory"] * (self.memory_window_frames + episodes)
        extra = (total - used) // max(n["local"] + n["anchor"], 1)
        return Allocation(local_frames=max(self.local_frames, min(self.local_frames + extra, room)),
                          anchor_window_frames=max(self.anchor_window_frames, min(
                              self.anchor_window_frames + extra, room - self.anchor_sink_frames)),
                          memory_window_frames=self.memory_window_frames, episodes=episodes)

    def check(self, geometry: Geometry, max_frames: int) -> None:
        roles = self.load_roles(geometry)
        self.allocate(geometry, roles)
        if not self.rope_reencode:
            check_absolute_fits(geometry, max_frames, self.name)
            return
        room = geometry.horizon_frames - geometry.frames_per_chunk
        for key, frames in (("local_frames", self.local_frames),
                            ("anchor_sink_frames + anchor_window_frames", self.anchor_sink_frames + self.anchor_window_frames),
                            ("memory_window_frames", self.memory_window_frames)):
            if frames > room:
                raise ConfigError(f"method.{key}={frames}: re-encoded positions must fit the trained horizon; "
                                  f"allowed: <= {room}")


@METHODS.register("head_forcing", config=HeadForcingConfig)
class HeadForcing(CacheMethod):
    config: HeadForcingConfig
    tags = ("headline",)

    def reset(self) -> None:
        super().reset()
        g, c = self.geometry, self.config
        self.roles = c.load_roles(g)
        self.alloc = c.allocate(g, self.roles)
        self.capacity = self.alloc.episodes
        self.role_code = [torch.tensor([ROLE_CODES[r] for r in self.roles[layer]], device=self.device)
                          for layer in range(g.layers)]  # per layer: [H] role codes
        # Every memory head of every layer in one table, layer after layer (rows of the table).
        layer_of, head_of = np.nonzero(self.roles == "memory")
        self.memory_rows = torch.from_numpy(layer_of).to(self.device), torch.from_numpy(head_of).to(self.device)
        self.table = None
        if c.episodic and len(layer_of):
            rule = EpisodicMemory(self.capacity, c.episode_threshold, c.episode_max_frames)
            self.table = EpisodeTable(rule, len(layer_of), self.batch, g.tokens_per_frame, g.head_dim,
                                      self.dtype, self.device)
        self._recache: list[int] = []

    def heads_with(self, layer: int, *roles: str) -> torch.Tensor:
        return torch.tensor([r in roles for r in self.roles[layer]])

    def memory_window(self) -> int:
        """Raw frames a memory head keeps (without episodic memory, its episodes' budget too)."""
        a = self.alloc
        return a.memory_window_frames if self.config.episodic else a.memory_window_frames + self.capacity

    def write(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        """Store the chunk in every layer, compress the frames that left the memory heads'
        windows (all layers at once), then prune each layer and put its episodes back."""
        frame, spatial = self.chunk_entries(chunk_start)
        self.frames_written = chunk_start + self.geometry.frames_per_chunk
        for store, (k, v) in zip(self.layers, kv):
            store.append(k.to(self.dtype), v.to(self.dtype), frame, spatial)
        if self.table is None:
            for layer, store in enumerate(self.layers):
                self.evict(layer, store)
            return
        self._compress(self.frames_written - self.memory_window())
        k, v, weight, first, spatial, row = self.table.entries()
        layer_of, head_of = self.memory_rows
        entry_layer = layer_of[row]
        for layer, store in enumerate(self.layers):  # episodes go after each memory head's window
            mine = entry_layer == layer
            store.keep_and_extend(self._keep(layer, store), k[:, mine], v[:, mine], first[mine], spatial[mine],
                                  head_of[row[mine]], KIND_MERGED, weight[mine])

    def evict(self, layer: int, store: LayerStore) -> None:
        store.keep(self._keep(layer, store))

    def _keep(self, layer: int, store: LayerStore) -> torch.Tensor:
        """Which entries [N] stay by their head's role (marking the anchor heads' sink frames); memory
        heads' episode entries do not: they are written back from the episode table."""
        c, a, now = self.config, self.alloc, self.frames_written
        role = self.role_code[layer][store.head]  # role of every entry
        local, anchor, memory = (role == ROLE_CODES[r] for r in ("local", "anchor", "memory"))
        sink = anchor & (store.frame < c.anchor_sink_frames)
        store.kind[sink] = KIND_SINK
        keep = local & (store.frame >= now - a.local_frames)
        keep |= anchor & (sink | (store.frame >= now - a.anchor_window_frames))
        keep |= memory & (store.kind == KIND_RAW) & (store.frame >= now - self.memory_window())
        return keep

    def _compress(self, window_start: int) -> None:
        """Move the memory heads' raw frames older than ``window_start`` into the episode table:
        the same frames of every memory head, oldest first."""
        layer_of, _ = self.memory_rows
        k_old, v_old, frames = [], [], None
        for layer, store in enumerate(self.layers):
            heads = int((layer_of == layer).sum())
            if not heads:
                continue
            old = (self.role_code[layer][store.head] == ROLE_CODES["memory"]) & (store.kind == KIND_RAW) & (store.frame < window_start)
            index = old.nonzero().flatten()  # head after head, frames in time order, positions in order
            frames = torch.unique(store.frame[index]) if frames is None else frames
            if not frames.numel():
                return
            shape = (store.k.shape[0], heads, frames.numel(), self.geometry.tokens_per_frame, store.k.shape[-1])
            if index.numel() != heads * frames.numel() * shape[3]:
                raise RuntimeError(f"layer {layer}: memory heads hold different old frames")
            k_old.append(store.k[:, index].view(shape))
            v_old.append(store.v[:, index].view(shape))
        if frames is None:
            return
        k_old = torch.cat(k_old, dim=1).permute(1, 2, 0, 3, 4)  # [M, frames, B, P, D]
        v_old = torch.cat(v_old, dim=1).permute(1, 2, 0, 3, 4)
        for j, f in enumerate(frames.tolist()):
            self.table.add_frame(f, k_old[:, j], v_old[:, j])

    def positions(self, layer, store, chunk_start):
        if self.config.rope_reencode:
            return repacked_positions(store, self.geometry.frames_per_chunk)
        return super().positions(layer, store, chunk_start)

    # -- prompt switches: re-cache the local and anchor heads' windows --------------------
    def on_prompt_switch(self, chunk_start: int, prompt: str) -> None:
        if not self.config.recache_on_switch:
            return
        F = self.geometry.frames_per_chunk
        window = max(self.alloc.local_frames, self.alloc.anchor_window_frames)
        first = max(0, chunk_start - window) // F * F
        self._recache = list(range(first, chunk_start, F))

    def recache_chunks(self) -> list[int]:
        chunks, self._recache = self._recache, []
        return chunks

    def recache(self, kv: list[tuple[torch.Tensor, torch.Tensor]], chunk_start: int) -> None:
        """Replace the local and anchor heads' K/V of frames [chunk_start, +F) by ``kv``."""
        g = self.geometry
        for layer, (store, (k, v)) in enumerate(zip(self.layers, kv)):
            for h in self.heads_with(layer, "local", "anchor").nonzero().flatten().tolist():
                for f in range(g.frames_per_chunk):
                    frame = chunk_start + f
                    idx = ((store.head == h) & (store.frame == frame) & (store.kind != KIND_MERGED)).nonzero().flatten()
                    if len(idx) == 0:
                        continue
                    idx = idx[torch.argsort(store.spatial[idx])]
                    tokens = slice(f * g.tokens_per_frame, (f + 1) * g.tokens_per_frame)
                    store.k[:, idx] = k[:, h, tokens].to(store.k.dtype)
                    store.v[:, idx] = v[:, h, tokens].to(store.v.dtype)
