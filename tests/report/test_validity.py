"""``forcebench validate`` on synthetic run directories with known answers: controls clearly
worse -> exit 0; a control that ties or wins -> exit 1 and a FAIL row; bad input -> one line,
exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic_runs import write_run

from bench import cli
from bench.report.runs import load
from bench.report.validity import check_controls

DURATIONS = (10.0, 60.0)
DIRECTIONS = {"continuation_psnr": True, "lpips_prev[lpips-alex]": False, "flow_magnitude[flow-blockmatch]": None}
CLEARLY_WORSE = {"sink": 22.0, "sliding_window": 21.0, "full": 19.0, "control_stale": 12.0,
                 "control_no_history": 15.0, "control_random_eviction": 17.0, "control_scrambled_positions": 18.0}


def write_sweep(root: Path, base: dict[str, float], prompts: int = 4, seeds: int = 2) -> Path:
    """Every method of ``base`` on prompts x seeds; continuation_psnr = base + 0.3 prompt + 0.2 seed
    (+ 0.1 for sliding_window on odd prompts), so paired differences are known exactly."""
    for method, level in base.items():
        for p in range(prompts):
            for s in range(seeds):
                psnr = level + 0.3 * p + 0.2 * s + (0.1 * (p % 2) if method == "sliding_window" else 0.0)
                lpips = 0.5 if method.startswith("control_") else 0.2  # lower is better: references better

                def values(seconds, psnr=psnr, lpips=lpips):
                    return {"continuation_psnr": psnr - 0.01 * seconds, "lpips_prev[lpips-alex]": lpips,
                            "flow_magnitude[flow-blockmatch]": 3.0}

                write_run(root, method, f"p{p}", s, DURATIONS, values, DIRECTIONS, segments=None)
    return root


def validate(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["validate", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("good"), CLEARLY_WORSE)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    # random eviction ties sink exactly (and beats sliding_window), scrambled positions is within 0.1 of
    # sliding_window, no history beats both
    base = {**CLEARLY_WORSE, "control_random_eviction": 22.0, "control_scrambled_positions": 21.0,
            "control_no_history": 23.0}
    root = write_sweep(tmp_path_factory.mktemp("bad"), base)
    return root


def test_controls_clearly_worse_pass_with_exit_0(good, tmp_path, capsys):
    code, out, err = validate(capsys, good, "--out", tmp_path)
    assert code == 0 and err == ""
    assert "**PASS: every negative control is beaten by sink, sliding_window on continuation_psnr at 60 s.**" in out
    report = json.loads((tmp_path / "validity.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert report["passed"] is True and report["not_beaten"] == {} and len(report["pairs"]) == 4 * 2
    pairs = {(p["control"], p["reference"]): p for p in report["pairs"]}
    stale = pairs[("control_stale", "sink")]  # 22 - 12 in every pair
    assert stale["n"] == 8 and stale["diff_mean"] == pytest.approx(10.0)
    assert stale["diff_low"] == pytest.approx(10.0) and stale["diff_high"] == pytest.approx(10.0)
    assert stale["p"] == pytest.approx(1 / 256) and stale["smallest_p"] == pytest.approx(1 / 256)
    window = pairs[("control_stale", "sliding_window")]  # 9 + 0.1 on odd prompts: mean 9.05
    assert window["diff_mean"] == pytest.approx(9.05) and 9.0 <= window["diff_low"] <= 9.05 <= window["diff_high"] <= 9.1
    assert (tmp_path / "validity.md").read_text() in out  # the same report, printed and written


def test_a_control_that_ties_or_wins_fails_with_exit_1(bad, tmp_path, capsys):
    code, out, _ = validate(capsys, bad, "--out", tmp_path)
    assert code == 1
    assert ("FAIL: NOT BEATEN on continuation_psnr at 60 s: control_no_history by sink, sliding_window; "
            "control_random_eviction by sink, sliding_window; control_scrambled_positions by sliding_window.") in out
    # an exact tie: every difference 0, p = 1
    assert ("| **control_random_eviction** | **sink** | **8** | **+0 [+0, +0]** | **1** | **0.00391** | **0** | "
            "**FAIL: the control ties or wins on continuation_psnr** |") in out
    # within 0.1 on odd prompts: mean +0.05, but 4 of the 8 differences are 0: p = 1/16
    assert "| **control_scrambled_positions** | **sliding_window** | **8** | **+0.05 [" in out
    assert "| **0.0625** | **0.00391** |" in out and "**FAIL: p >= alpha (this n detects" in out
    assert "| control_scrambled_positions | sink | 8 | +1 [+1, +1] | 0.00391 | 0.00391 |" in out  # beaten by sink
    report = json.loads((tmp_path / "validity.json").read_text())
    assert report["passed"] is False
    assert report["not_beaten"] == {"control_no_history": ["sink", "sliding_window"],
                                    "control_random_eviction": ["sink", "sliding_window"],
                                    "control_scrambled_positions": ["sliding_window"]}
    no_history = next(p for p in report["pairs"] if p["control"] == "control_no_history" and p["reference"] == "sink")
    assert no_history["diff_mean"] == pytest.approx(-1.0) and no_history["p"] == pytest.approx(1.0)
    assert not no_history["passed"] and no_history["reason"] == "the control ties or wins on continuation_psnr"
    assert "| **control_no_history** | **sink** |" in (tmp_path / "validity.md").read_text()


def test_direction_comes_from_the_metric(good, capsys):
    code, out, _ = validate(capsys, good, "--metric", "lpips_prev[lpips-alex]", "--seconds", "10",
                            "--references", "full")
    assert code == 0  # lower is better: 0.2 beats 0.5
    assert "| control_stale | full | 8 | -0.3 [-0.3, -0.3] | 0.00391 |" in out  # reference - control, in its units
    assert "(lower lpips_prev[lpips-alex])" in out


def test_too_few_pairs_cannot_pass_and_say_so(tmp_path, capsys):
    root = write_sweep(tmp_path / "runs", {"sink": 22.0, "control_stale": 12.0}, prompts=3, seeds=2)
    code, out, _ = validate(capsys, root, "--references", "sink")
    assert code == 1  # 6 pairs: the smallest exact p is 1/64 > 0.01
    assert "n = 6 pairs cannot reach p < 0.01 (smallest p 0.0156): add prompts or seeds" in out
    assert validate(capsys, root, "--references", "sink", "--alpha", "0.05")[0] == 0


def test_the_check_is_one_function_with_known_values(good):
    validity = check_controls(load(good), "continuation_psnr", 60.0, ["sink"], 0.01, 200, 0)
    assert [(c.control, c.passed) for c in validity.checks] == [
        ("control_no_history", True), ("control_random_eviction", True), ("control_scrambled_positions", True),
        ("control_stale", True)]
    assert [c.diff_mean for c in validity.checks] == pytest.approx([7.0, 5.0, 4.0, 10.0])
    assert validity.passed and validity.not_beaten() == {}


@pytest.mark.parametrize("argv, message", [
    (["--metric", "psnr"], "--metric='psnr': not in the runs; allowed: continuation_psnr, "),
    (["--metric", "flow_magnitude[flow-blockmatch]"], "has no direction (higher_is_better) in the runs; allowed: a "
                                                      "metric with one: continuation_psnr, fps, lpips_prev[lpips-alex]"),
    (["--seconds", "30"], "--seconds=30.0: no runs at that duration; allowed: 10, 60"),
    (["--references", "sinkk"], "--references='sinkk': no such (non-control) method in the runs; allowed: full, sink, "
                                "sliding_window"),
    (["--references", "control_stale"], "--references='control_stale': no such (non-control) method"),
    (["--alpha", "0"], "--alpha=0.0: allowed: 0 < alpha < 1"),
    (["--bootstrap", "0"], "--bootstrap=0: allowed: >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(good, capsys, argv, message):
    code, out, err = validate(capsys, good, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("forcebench: error: ")
    assert message in err


def test_runs_without_controls_or_the_metric_are_bad_input(tmp_path, capsys):
    root = write_sweep(tmp_path / "runs", {"sink": 22.0, "sliding_window": 21.0}, prompts=2, seeds=1)
    code, _, err = validate(capsys, root)
    assert code == 2 and "no control runs found (method names starting with 'control_')" in err
    code, _, err = validate(capsys, tmp_path / "nowhere")
    assert code == 2 and "no such directory" in err
    write_run(tmp_path / "old", "control_stale", "p0", 0, DURATIONS, lambda s: {"flow_magnitude[flow-blockmatch]": 1.0},
              DIRECTIONS, segments=None)
    code, _, err = validate(capsys, tmp_path / "old")
    assert code == 2 and "--metric='continuation_psnr': not in the runs; allowed: " in err
