"""The autoregressive loop: generate a video chunk by chunk under a cache method.

Per chunk: draw the chunk's noise from a generator seeded by (seed, chunk index), run the
sampler's denoising steps (each attention call reads the method's per-head cache views),
then one forward at t = 0 on the clean chunk that returns its K/V, which the method
stores and prunes. Because each chunk's noise depends only on (seed, chunk index) and the
model is causal, a shorter rollout is exactly a prefix of a longer one.
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.profiler import record_function

from bench.models.attention import AttentionObservers
from bench.models.base import Backbone
from bench.sampler import FlowSampler
from core.timeline import prompt_starts
from core.timing import Stopwatch

if TYPE_CHECKING:
    from methods.base import CacheMethod


@dataclass
class ChunkRecord:
    """One chunk: frames [frame_start, frame_end); ``wall_s``: wall time of the DiT's forwards
    (denoising steps, the clean K/V pass, re-cache passes) plus the cache method's work on it,
    of which ``method_s`` is the method's share (views, write, re-cache bookkeeping);
    ``decode_s`` / ``encode_s``: decoding the chunk / encoding a prompt starting at it (not in wall_s); the cache after the update
    (tokens [L, H] per layer and head, KV bytes) and the peak memory so far (CUDA max allocated on
    a GPU, the process's peak RSS on a CPU). Times are synchronised on CUDA."""

    index: int
    frame_start: int
    frame_end: int
    prompt_index: int
    wall_s: float
    kv_bytes: int
    tokens: np.ndarray
    peak_memory_bytes: int = 0
    method_s: float = 0.0
    decode_s: float = 0.0
    encode_s: float = 0.0  # encoding the prompt that starts at this chunk (0 when none does)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


@dataclass
class Rollout:
    frames: torch.Tensor  # [T, 3, H, W] in [0, 1]
    chunks: list[ChunkRecord]
    prompt_encode_s: list[float] = field(default_factory=list)  # per prompt of the schedule


def chunk_generator(seed: int, chunk: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + chunk) % (2**63))


@torch.no_grad()
def generate(
    model: Backbone,
    method: CacheMethod,
    timeline: list[tuple[float, str]],
    num_frames: int,
    seed: int,
    sampler: FlowSampler,
    batch: int = 1,
    on_chunk: Callable[[ChunkRecord], None] | None = None,
    prefill: torch.Tensor | None = None,
) -> Rollout:
    """Roll ``model`` out to ``num_frames`` (a multiple of frames_per_chunk) under ``method``.

    timeline: [(start second, prompt)], the first at 0. prefill: optional given frames
    [B, P, C, H, W] in model space (P a multiple of frames_per_chunk) that replace the
    first P generated frames: they are only written to the cache by the clean pass, as
    if the model had generated them. Returns frames of batch element 0.
    """
    frames, records, encode_s = [], [], []
    for record, video in rollout_chunks(model, method, timeline, num_frames, seed, sampler, batch, prefill, encode_s):
        records.append(record)
        frames.append(video)
        if on_chunk is not None:
            on_chunk(record)
    return Rollout(torch.cat(frames), records, encode_s)


@torch.no_grad()
def rollout_chunks(
    model: Backbone,
    method: CacheMethod,
    timeline: list[tuple[float, str]],
    num_frames: int,
    seed: int,
    sampler: FlowSampler,
    batch: int = 1,
    prefill: torch.Tensor | None = None,
    encode_s: list[float] | None = None,
) -> Iterator[tuple[ChunkRecord, torch.Tensor]]:
    """``generate`` one chunk at a time: yields (record, decoded frames [F, 3, H', W'] of batch
    element 0) after each chunk, so callers can interleave rollouts (the timing pass does).
    Prompt encoding times are appended to ``encode_s``."""
    g = model.geometry
    F = g.frames_per_chunk
    if num_frames % F:
        raise ValueError(f"num_frames={num_frames} must be a multiple of frames_per_chunk={F}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    method.reset()
    starts = prompt_starts(timeline, g.fps, F)
    observer = method.observe_attention if method.needs_attention_mass else None
    if getattr(method, "needs_attention_logits", False):  # both kinds of statistics, from one call
        observer = AttentionObservers(mass=observer, logits=method.observe_logits)
    clean: list[torch.Tensor] = []
    context, prompt_index = None, -1
    # a causal VAE decodes chunk after chunk with its cache carried over (Wan); others per chunk
    decode = model.decode_stream() if hasattr(model, "decode_stream") else model.decode
    watch = Stopwatch(device)
    for c in range(num_frames // F):
        watch.reset()
        active = max(i for i, s in enumerate(starts) if s <= c)
        if active != prompt_index:
            with watch.section("encode"):
                context = model.encode_prompt(timeline[active][1])
            if encode_s is not None:
                encode_s.append(watch.seconds["encode"])
            if prompt_index >= 0:
                method.on_prompt_switch(c * F, timeline[active][1])
            prompt_index = active
        recache = method.recache_chunks()

        gen = chunk_generator(seed, c)
        x = torch.randn((batch, F, *g.frame_shape), generator=gen).to(device=device, dtype=dtype)
        given = prefill is not None and (c + 1) * F <= prefill.shape[1]
        if given:
            x = prefill[:, c * F:(c + 1) * F].to(device=device, dtype=dtype)
        with watch.section("chunk"):
            for start in recache:  # recompute earlier chunks' K/V under the new prompt
                with watch.section("method"), record_function("forcebench.method"):
                    views = method.views_before(start)
                _, kv = model.forward_chunk(clean[start // F], torch.zeros(batch, F, device=device), context,
                                            views, return_kv=True)
                with watch.section("method"), record_function("forcebench.method"):
                    method.recache(kv, start)
            with watch.section("method"), record_function("forcebench.method"):
                views = method.views(c * F)
            ts = [] if given else sampler.timesteps()
            for t, t_next in zip(ts[:-1], ts[1:]):
                v, _ = model.forward_chunk(x, torch.full((batch, F), t, device=device), context, views,
                                           observer=observer)
                x = sampler.step(x, v, t, t_next, gen)
            _, kv = model.forward_chunk(x, torch.zeros(batch, F, device=device), context, views,
                                        return_kv=True, observer=observer)
            with watch.section("method"), record_function("forcebench.method"):
                method.write(kv, c * F)
            clean.append(x)
        with watch.section("decode"):
            video = decode(x)[0]
        stats = method.stats()
        record = ChunkRecord(c, c * F, (c + 1) * F, prompt_index, watch.seconds["chunk"], stats.kv_bytes,
                             stats.tokens.cpu().numpy(), peak_memory_bytes(device), watch.seconds["method"],
                             watch.seconds["decode"], watch.seconds["encode"])
        yield record, video.cpu()
