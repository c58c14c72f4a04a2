"""The files of a run directory: written from a rollout, read back to score it again.

Files: config.yaml, meta.json, frames.npy ([T, H, W, 3] uint8, the frames every metric
scores), video.gif, chunks.csv (one row per chunk), cache_heads.csv (tokens per chunk,
layer and head), metrics.csv (long-form rows, see metrics/suite.py) and summary.json
(written last: its presence with status ok marks a finished run). ``read_rollout`` and
``read_metric_rows`` give back what a later request needs to score more durations or
metric families without rolling out again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from bench.config import RunConfig
from bench.rollout import ChunkRecord, Rollout
from bench.video import from_uint8, save_gif, save_npy, to_uint8
from core.files import atomic_write_text, write_json

CHUNK_FIELDS = ["chunk", "frame_start", "frame_end", "prompt_index", "wall_s", "kv_bytes", "tokens_total",
                "tokens_per_head_min", "tokens_per_head_max", "peak_memory_bytes", "method_s", "decode_s", "encode_s"]
NUMERIC_ROW_FIELDS = {"seconds": float, "frames": int, "segment": int, "start_s": float, "end_s": float, "value": float}


def csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_rollout(stage: Path, run: RunConfig, rollout: Rollout, meta: dict) -> None:
    """config.yaml, meta.json, frames.npy, video.gif, chunks.csv and cache_heads.csv."""
    g = run.geometry()
    atomic_write_text(stage / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(run)))
    frames = to_uint8(rollout.frames)
    save_npy(stage / "frames.npy", frames)
    save_gif(stage / "video.gif", frames, fps=g.fps)
    atomic_write_text(stage / "chunks.csv", csv_text([
        {"chunk": c.index, "frame_start": c.frame_start, "frame_end": c.frame_end,
         "prompt_index": c.prompt_index, "wall_s": f"{c.wall_s:.6f}", "kv_bytes": c.kv_bytes,
         "tokens_total": int(c.tokens.sum()), "tokens_per_head_min": int(c.tokens.min()),
         "tokens_per_head_max": int(c.tokens.max()), "peak_memory_bytes": c.peak_memory_bytes,
         "method_s": f"{c.method_s:.6f}", "decode_s": f"{c.decode_s:.6f}", "encode_s": f"{c.encode_s:.6f}"}
        for c in rollout.chunks]))
    atomic_write_text(stage / "cache_heads.csv", csv_text([
        {"chunk": c.index, "layer": layer, "head": head, "tokens": int(c.tokens[layer, head])}
        for c in rollout.chunks for layer in range(g.layers) for head in range(g.heads)]))
    write_json(stage / "meta.json", meta)


def read_rollout(run_dir: Path, layers: int, heads: int) -> Rollout | None:
    """The saved frames (as scored: uint8 / 255) and chunk records of a run directory; None
    when a file is missing or was written without a field rescoring needs."""
    try:
        frames = np.load(run_dir / "frames.npy", allow_pickle=False)
        with open(run_dir / "chunks.csv", newline="") as fh:
            chunk_rows = list(csv.DictReader(fh))
        with open(run_dir / "cache_heads.csv", newline="") as fh:
            head_rows = list(csv.DictReader(fh))
        tokens = np.zeros((len(chunk_rows), layers, heads), np.int64)
        for r in head_rows:
            tokens[int(r["chunk"]), int(r["layer"]), int(r["head"])] = int(r["tokens"])
        chunks = [ChunkRecord(int(r["chunk"]), int(r["frame_start"]), int(r["frame_end"]), int(r["prompt_index"]),
                              float(r["wall_s"]), int(r["kv_bytes"]), tokens[i], int(r["peak_memory_bytes"]),
                              *(float(r.get(k) or 0) for k in ("method_s", "decode_s", "encode_s")))  # absent before
                  for i, r in enumerate(chunk_rows)]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return Rollout(from_uint8(frames), chunks)


def read_metric_rows(run_dir: Path) -> list[dict]:
    """metrics.csv as rows with numeric fields parsed (empty when there is none)."""
    try:
        with open(run_dir / "metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        return []
    for row in rows:
        for key, kind in NUMERIC_ROW_FIELDS.items():
            row[key] = kind(row[key])
    return rows


def merge_rows(old: list[dict], new: list[dict]) -> list[dict]:
    """Old rows of (duration, family) pairs not scored again, then the new ones; by duration."""
    redone = {(float(r["seconds"]), r["family"]) for r in new}
    kept = [r for r in old if (float(r["seconds"]), r["family"]) not in redone]
    return sorted(kept + new, key=lambda r: float(r["seconds"]))


def scalar_metrics(rows: list[dict], seconds: float) -> dict[str, float]:
    """Whole-video values (segment -1, status ok) of one duration."""
    return {r["metric"]: float(r["value"]) for r in rows
            if float(r["seconds"]) == seconds and int(r["segment"]) == -1 and r["status"] == "ok"}
