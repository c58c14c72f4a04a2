"""forcebench time-chunks: the interleaved timing pass, its agreement check, targets and files."""

import json

import pytest
from conftest import forcebench

from bench.cli import main
from bench.tools.chunk_timing import ranking_agreement
from bench.tools.chunk_timing_report import targets


def row(p50, share=0.05, window=None):
    return {"p50_s": p50, "p95_s": 1.1 * p50, "spread": 0.1, "noisy": False, "method_share": share,
            "kv_bytes": 1024, "vs_window": None if window is None else p50 / window}


def test_agreement_names_every_swapped_pair_with_its_gap():
    idle = {"a": row(1.0), "b": row(1.02), "c": row(2.0)}
    loaded = {"a": row(3.1), "b": row(3.0), "c": row(6.0)}
    result = ranking_agreement(idle, loaded)
    assert result["swapped_pairs"] == [{"pair": ["a", "b"], "idle_gap": pytest.approx(0.02)}]
    assert result["kendall_tau"] == pytest.approx(1 / 3)
    verdicts = targets({"idle": {"sliding_window": row(1.0, window=1.0), "head_forcing": row(1.06, 0.3, 1.0)},
                        "agreement": result})
    assert [t["pass"] for t in verdicts] == [False, False, True]  # 1.06x; 30 % bookkeeping; a 2 % swap is allowed
    assert "1.060x" in verdicts[0]["value"] and "head_forcing" in verdicts[1]["value"]


def test_time_chunks_writes_both_passes_and_the_breakdown(tmp_path):
    out = tmp_path / "perf"
    proc = forcebench("time-chunks", "--methods", "sliding_window,head_forcing", "--seconds", "4.5",
                              "--warmup-seconds", "1.5", "--profile-seconds", "1.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "chunk_timing_cpu.json").read_text())
    assert set(result["idle"]) == set(result["loaded"]) == set(result["breakdown"]) == {"sliding_window", "head_forcing"}
    for r in result["idle"].values():
        assert r["n"] == 4 and 0 < r["p50_s"] <= r["p95_s"] and 0 < r["method_share"] < 1  # chunks 2..5 of 6
    assert result["idle"]["sliding_window"]["vs_window"] == 1.0
    for b in result["breakdown"].values():
        assert 0 < b["attention"] < 1 and 0 < b["forward"] < 1 and 0 < b["method"] < 1
    assert [t["target"].split()[0] for t in result["targets"]] == ["head_forcing", "every", "no"]
    assert "## Targets" in (out / "chunk_timing_cpu.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--seconds", "2", "--warmup-seconds", "3"], "--seconds=2.0: must exceed --warmup-seconds=3.0"),
    (["--load", "-1"], "--load=-1: allowed: >= 0"),
    (["--methods", "nope"], "nope"),
])
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    assert main(["time-chunks", *args, "--out", str(tmp_path / "perf")]) == 2  # refused before any work
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "perf").exists()
