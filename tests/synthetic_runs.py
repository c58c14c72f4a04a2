"""Synthetic run directories as bench/run.py writes them (summary.json, metrics.csv,
meta.json), with known whole-prefix values, for the report tests (leaderboard, validate)."""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Callable
from pathlib import Path

Values = Callable[[float], dict[str, float]]  # seconds -> metric key -> whole-prefix value


def write_run(root: Path, method: str, prompt: str, seed: int, durations: tuple[float, ...], values: Values,
              directions: dict[str, bool | None], status: str = "ok", name: str | None = None,
              segments: str | None = "palette_fidelity") -> Path:
    """One run directory of ``method`` on (``prompt``, ``seed``); ``values(seconds)`` gives the
    whole-prefix values (system keys latency_mean_s and kv_bytes go to the summary too when
    present; latency_p50_s and latency_spread only there). ``segments``: a key that also gets 5 s segment rows rising by 0.01 a segment."""
    name = name or f"toy__{method}__{prompt}__s{seed}__{zlib.crc32(f'{method}|{prompt}|{seed}'.encode()):08x}"
    run_dir = root / name
    run_dir.mkdir(parents=True)
    summary_durations, rows = [], []
    for seconds in durations:
        v = values(seconds)
        system = {k: v[k] for k in ("latency_mean_s", "latency_p50_s", "latency_spread") if k in v}
        if "kv_bytes" in v:
            system.update(kv_bytes=int(v["kv_bytes"]), kv_mib=v["kv_bytes"] / 2**20)
        summary_durations.append({"seconds_requested": seconds, "frames": int(4 * seconds), "seconds": seconds,
                                  "fps": 40.0, **system, "metrics": v})
        common = {"run": name, "seconds": seconds, "frames": int(4 * seconds), "version": "v1", "status": "ok"}
        for key, value in v.items():
            if key in ("latency_p50_s", "latency_spread"):  # system numbers: in the summary only
                continue
            rows.append({**common, "metric": key, "name": key, "encoder": "", "family": "f",
                         "higher_is_better": directions[key], "segment": -1, "start_s": "nan", "end_s": "nan",
                         "value": value})
        if segments in v:
            for i in range(int(seconds // 5)):
                rows.append({**common, "metric": segments, "name": segments, "encoder": "", "family": "oracle",
                             "higher_is_better": directions[segments], "segment": i, "start_s": 5.0 * i,
                             "end_s": 5.0 * (i + 1), "value": v[segments] + 0.01 * i})
    summary = {"status": status, "run": name, "model": "toy", "method": method, "method_params": {"name": method},
               "prompt_id": prompt, "seed": seed, "frames_generated": int(4 * max(durations)),
               "durations": summary_durations}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "meta.json").write_text(json.dumps({"run": name, "git": {"commit": "abc123def4567890", "dirty": False}}))
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return run_dir
