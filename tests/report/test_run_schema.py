"""The typed schema of summary.json (bench/report/schema.py) and the one run-directory reader
(bench/report/runs.py): a real-shaped finished and failed summary, every rejection (one warning
line naming the file), the older ``seconds`` key, and that the table, the leaderboard and the
regression check see the same finished runs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from bench.report.regress import load_results
from bench.report.regress_tolerances import Tolerance, Tolerances
from bench.report.runs import load, read_runs
from bench.report.schema import DurationResult, RunSummary, SummaryError
from bench.report.table import load_runs
from core.errors import ConfigError

SYSTEM = {"latency_mean_s": 0.012, "latency_p50_s": 0.011, "latency_p95_s": 0.02, "first_chunk_latency_s": 0.03,
          "fps": 250.0, "kv_bytes": 1048576, "kv_mib": 1.0, "tokens_per_head_mean": 48.0, "tokens_per_head_max": 48,
          "tokens_total": 384, "peak_memory_bytes": 0}


def finished(method: str = "sink", prompt: str = "city_stripes", seed: int = 0, run: str | None = None) -> dict:
    """A summary.json as bench/run.py ``summarise`` writes it (two durations)."""
    durations = [{"seconds_requested": s, "frames": frames, "seconds": frames / 4.0, "chunks": frames // 3, **SYSTEM,
                  "metrics": {"palette_fidelity": 0.9 - 0.01 * s, "revisit_psnr_beyond": None if s < 5 else 21.5},
                  "scoring": {"oracle": {"version": "v1", "status": "scored"}}}
                 for s, frames in ((1.0, 6), (5.0, 21))]
    return {"status": "ok", "run": run or f"toy__{method}__{prompt}__s{seed}__0123456789", "model": "toy",
            "method": method, "method_params": {"name": method, "budget_frames": 6}, "prompt_id": prompt, "seed": seed,
            "frames_generated": 21, "rounding": "durations rounded up to whole chunks of 3 frames at 4 frames/s",
            "metrics_version": {"oracle": "v1"}, "metrics_unavailable": [], "encoders": {},
            "latency_includes": "denoising steps", "durations": durations}


def failure(method: str = "full", prompt: str = "city_stripes", seed: int = 0) -> dict:
    """A summary.json as bench/run.py ``record_failure`` writes it."""
    return {"status": "failed: out of memory", "message": "OutOfMemoryError: CUDA out of memory",
            "run": f"toy__{method}__{prompt}__s{seed}__9876543210", "prompt_id": prompt, "seed": seed,
            "method": method}


def write(root: Path, name: str, summary: dict | bytes) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    data = summary if isinstance(summary, bytes) else json.dumps(summary).encode()
    (run_dir / "summary.json").write_bytes(data)
    return run_dir


def test_a_finished_summary_as_run_py_writes_it():
    s = RunSummary.from_json(finished())
    assert (s.status, s.ok, s.run, s.model, s.method, s.prompt_id, s.seed, s.message) == (
        "ok", True, "toy__sink__city_stripes__s0__0123456789", "toy", "sink", "city_stripes", 0, None)
    assert s.key == ("sink", "city_stripes", 0) and s.method_params == {"name": "sink", "budget_frames": 6}
    short, long = s.durations
    assert long == DurationResult(seconds_requested=5.0, seconds_generated=5.25, frames=21, chunks=7, system=SYSTEM,
                                  metrics={"palette_fidelity": pytest.approx(0.85), "revisit_psnr_beyond": 21.5})
    assert short.metrics["revisit_psnr_beyond"] is None  # undefined for this video: kept as None
    assert "scoring" not in short.system and "seconds" not in short.system
    assert short.values() == {"frames": 6, "chunks": 2, **SYSTEM, **short.metrics}
    with pytest.raises(TypeError):
        long.metrics["palette_fidelity"] = 0.0  # read-only


def test_a_failed_summary_has_no_durations():
    s = RunSummary.from_json(failure())
    assert not s.ok and s.status == "failed: out of memory" and s.durations == ()
    assert s.key == ("full", "city_stripes", 0) and s.model is None and s.message.startswith("OutOfMemoryError")
    assert RunSummary.from_json({**failure(), "durations": "whatever"}).durations == ()  # not read for a failure


def test_the_older_seconds_key_is_the_requested_duration():
    old = finished()
    for d in old["durations"]:
        del d["seconds_requested"]
    s = RunSummary.from_json(old)
    assert [(d.seconds_requested, d.seconds_generated) for d in s.durations] == [(1.5, 1.5), (5.25, 5.25)]
    both = RunSummary.from_json(finished())
    assert [d.seconds_requested for d in both.durations] == [1.0, 5.0]  # seconds_requested wins when present


def _dur(**change) -> dict:
    d = {"seconds_requested": 1.0, "frames": 4, "metrics": {"psnr": 20.0}}
    return {k: v for k, v in {**d, **change}.items() if v is not ...}


REJECTED = {
    "binary": (b"\x00\xff\xfe\x80", "unreadable or binary (UnicodeDecodeError)"),
    "malformed": (b'{"status": "ok", "run": ', "not valid JSON"),
    "list": (b'[{"status": "ok"}]', "a JSON list, not an object"),
    "no_status": ({**finished(), "status": None}, "no status string"),
    "seed_text": ({**finished(), "seed": "0"}, "seed '0' is not an integer"),
    "seed_bool": ({**failure(), "seed": True}, "seed True is not an integer"),
    "ok_fields": ({"status": "ok", "method": "sink"}, "status 'ok' without run, prompt_id, seed, durations"),
    "failed_fields": ({"status": "failed: error", "seed": 0}, "status 'failed: error' without run, method, prompt_id"),
    "prompt_number": ({**finished(), "prompt_id": 3}, "prompt_id 3 is not a string"),
    "method_null": ({**finished(), "method": None}, "method None is not a string"),
    "model_number": ({**finished(), "model": 1}, "model 1 is not a string"),
    "params_list": ({**finished(), "method_params": ["sink"]}, "method_params ['sink'] is not an object"),
    "no_durations": ({**finished(), "durations": []}, "durations is not a non-empty list"),
    "duration_list": ({**finished(), "durations": [[1.0]]}, "duration [1.0] is not an object"),
    "no_seconds": ({**finished(), "durations": [_dur(seconds_requested=...)]}, "lacks seconds_requested"),
    "seconds_text": ({**finished(), "durations": [_dur(seconds_requested="5")]}, "lacks seconds_requested"),
    "metrics_list": ({**finished(), "durations": [_dur(metrics=[1.0])]}, "has no metrics object"),
    "metric_text": ({**finished(), "durations": [_dur(metrics={"psnr": "high"})]},
                    "metric 'psnr' has the non-number value 'high'"),
    "frames_text": ({**finished(), "durations": [_dur(frames="4")]},
                    "duration value 'frames' has the non-number value '4'"),
    "fps_null_ok_but_kv_text": ({**finished(), "durations": [_dur(fps=None, kv_bytes="1 MiB")]},
                                "duration value 'kv_bytes' has the non-number value '1 MiB'"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_each_rejection_is_one_warning_line_naming_the_file(case, tmp_path, capsys):
    data, reason = REJECTED[case]
    write(tmp_path, "toy__sink__a__s0__0000000000", finished(prompt="a"))
    bad = write(tmp_path, f"zz_{case}", data)
    entries = read_runs(tmp_path)
    assert [(p.name, s is None) for p, s in entries] == [("toy__sink__a__s0__0000000000", False), (bad.name, True)]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"forcebench: warning: {bad / 'summary.json'}: ") and reason in line
    assert line.endswith("; run directory skipped")
    if not isinstance(data, bytes):
        with pytest.raises(SummaryError, match=re.escape(reason)):
            RunSummary.from_json(data)


def test_a_missing_runs_directory_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"runs='.*nowhere': no such directory"):
        read_runs(tmp_path / "nowhere")


@pytest.fixture
def mixed(tmp_path) -> Path:
    """One finished, one failed, one staging (a complete summary: must not be read) and one
    corrupt run directory, an unfinished one, and Hydra's folder."""
    root = tmp_path / "runs"
    write(root, "toy__sink__city_stripes__s0__0123456789", finished())
    write(root, "toy__full__city_stripes__s0__9876543210", failure())
    write(root, "toy__ghost__city_stripes__s0__1111111111.tmp-4242", finished(method="ghost"))
    write(root, "toy__corrupt__city_stripes__s0__2222222222", b'{"status": "ok", "durations": [')
    (root / "toy__sink__city_stripes__s1__3333333333").mkdir()  # started, never finished
    write(root, "_hydra", finished(method="hydra"))
    return root


def test_table_leaderboard_and_regress_see_the_same_finished_runs(mixed, capsys):
    corrupt = mixed / "toy__corrupt__city_stripes__s0__2222222222" / "summary.json"

    def one_warning() -> None:
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and str(corrupt) in err[0] and "not valid JSON" in err[0]

    entries = read_runs(mixed)
    one_warning()
    assert [p.name for p, _ in entries] == sorted(p.name for p in mixed.iterdir() if p.name != "_hydra")
    summaries = {p.name: s for p, s in entries}
    assert summaries["toy__ghost__city_stripes__s0__1111111111.tmp-4242"] is None  # staging: never read
    finished_runs = {s.run for s in summaries.values() if s is not None and s.ok}
    assert finished_runs == {"toy__sink__city_stripes__s0__0123456789"}

    runs = load(mixed)
    one_warning()
    assert set(runs.finished) == finished_runs and len(runs.excluded) == 4  # failed, staging, corrupt, unfinished
    assert set(runs.videos.run) == finished_runs and sorted(runs.videos.seconds) == [1.0, 5.0]
    assert "scoring" not in runs.videos and {"palette_fidelity", "kv_bytes"} <= runs.metric_keys()

    table = load_runs(mixed)
    one_warning()
    assert set(table.run) == finished_runs and sorted(table.seconds_requested) == [1.0, 5.0]

    results = load_results(mixed, Tolerances("t.yaml", default=Tolerance(), skip=("latency_*", "fps")))
    one_warning()
    assert {row[:3] for row in results.rows} == {("sink", "city_stripes", 0)}
    assert results.failed == {("full", "city_stripes", 0): "failed: out of memory"}
    values = {metric: v for (row, metric), v in results.values.items() if row[3] == 5.0}
    assert values["frames"] == 21 and values["kv_bytes"] == 1048576 and values["revisit_psnr_beyond"] == 21.5
    assert not [m for m in values if m.startswith("latency") or m == "fps"]  # skipped metrics left out
    assert math.isnan(results.values[(("sink", "city_stripes", 0, 1.0), "revisit_psnr_beyond")])


def test_the_older_seconds_key_reaches_every_report(tmp_path, capsys):
    old = finished()
    for d in old["durations"]:
        del d["seconds_requested"]
    write(tmp_path, old["run"], old)
    assert sorted(load(tmp_path).videos.seconds) == sorted(load_runs(tmp_path).seconds_requested) == [1.5, 5.25]
    rows = load_results(tmp_path, Tolerances("t.yaml")).rows
    assert sorted(r[3] for r in rows) == [1.5, 5.25]
    assert capsys.readouterr().err == ""
