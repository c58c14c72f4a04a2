"""`forcebench regress`: the CI sweep matches its committed reference; the check itself on
synthetic run directories (tolerances, missing and new rows, failed runs, --update, errors)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from bench.cli import main as cli
from bench.report.regress import read_reference
from bench.report.regress_tolerances import Tolerance, Tolerances, load_tolerances
from core.paths import REPO_DIR

CI_TOLERANCES = REPO_DIR / "conf" / "regress" / "toy_ci.yaml"
CI_REFERENCE = REPO_DIR / "results" / "reference" / "toy_ci.csv"


def regress(capsys, *args) -> tuple[int, str, str]:
    code = cli(["regress", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


# --- the CI sweep against the committed reference -------------------------------------


@pytest.fixture(scope="module")
def ci_runs(tmp_path_factory) -> Path:
    """The sweep of conf/regress/toy_ci.yaml, run once (in process) for this module."""
    from bench.report.regress import run_sweep

    runs = tmp_path_factory.mktemp("ci") / "runs"
    run_sweep(load_tolerances(CI_TOLERANCES).sweep, runs)
    return runs


def test_ci_sweep_matches_the_committed_reference(ci_runs, capsys):
    code, out, _ = regress(capsys, ci_runs, "--tolerances", CI_TOLERANCES, "--reference", CI_REFERENCE,
                           "--fail-on-new")
    assert code == 0, ("numbers of the CI sweep moved; if on purpose, update the reference (README, "
                       f"'Regression check'):\n{out}")
    assert "regress: PASS" in out


def test_committed_reference_covers_the_sweep_and_no_timings():
    values = read_reference(CI_REFERENCE)
    rows = {row for row, _ in values}
    assert {(m, p, s) for m, p, s, _ in rows} == {(m, p, 0) for m in ("full", "sink", "head_forcing")
                                                   for p in ("forest_blocks", "city_stripes")}
    assert {sec for *_, sec in rows} == {3.0, 9.0}
    metrics = {m for _, m in values}
    assert {"kv_bytes", "tokens_per_head_mean", "palette_fidelity", "sprite_presence",
            "clip_first_frame[toy-clip]", "subject_consistency[toy-clip]", "temporal_flickering"} <= metrics
    assert not [m for m in metrics if "latency" in m or m in ("fps", "peak_memory_bytes")]


def test_a_shifted_number_in_the_ci_sweep_fails_loudly(ci_runs, tmp_path, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(ci_runs, runs)
    (summary_path,) = runs.glob("toy__sink__city_stripes__*/summary.json")
    summary = json.loads(summary_path.read_text())
    summary["durations"][-1]["metrics"]["palette_fidelity"] -= 0.01
    summary_path.write_text(json.dumps(summary))
    code, out, _ = regress(capsys, runs, "--tolerances", CI_TOLERANCES, "--reference", CI_REFERENCE)
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("REGRESSION")]
    assert line.split()[1:6] == ["sink", "city_stripes", "0", "9", "palette_fidelity"]
    assert "regress: FAIL: 1 outside tolerance" in out


# --- the check on synthetic run directories -------------------------------------------


def make_run(root: Path, method: str, prompt: str, durations: dict[float, dict[str, float]], seed: int = 0,
             status: str = "ok", name: str | None = None) -> Path:
    """A run directory with only the summary.json that regress reads."""
    run_dir = root / (name or f"toy__{method}__{prompt}__s{seed}__0123456789")
    run_dir.mkdir(parents=True)
    summary = {"status": status, "run": run_dir.name, "method": method, "prompt_id": prompt, "seed": seed}
    if status == "ok":
        summary["durations"] = [{"seconds_requested": s, "frames": int(4 * s), "kv_bytes": 1024, "latency_mean_s": 0.01,
                                 "metrics": {"latency_mean_s": 0.01, **m}} for s, m in durations.items()]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


TOLERANCES = """\
default: {abs: 1.0e-6}
metrics:
  psnr: {abs: 0.5}
  "clip_*[toy-clip]": {rel: 0.01}
  kv_bytes: {abs: 0}
skip: [latency_*, fps]
"""
BASE = {1.0: {"psnr": 20.0, "clip_first[toy-clip]": 0.9, "fps": 30.0}, 2.0: {"psnr": 18.0}}


@pytest.fixture
def setup(tmp_path, capsys):
    """Synthetic runs (two methods), a tolerance file and a reference written with --update."""
    runs, tol, ref = tmp_path / "runs", tmp_path / "tol.yaml", tmp_path / "ref" / "table.csv"
    tol.write_text(TOLERANCES)
    for method in ("full", "sink"):
        make_run(runs, method, "p", BASE)
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref, "--update")
    assert code == 0 and "wrote 14 values (4 rows)" in out and "note:" not in out
    return runs, tol, ref


def rewrite(runs: Path, method: str, durations: dict) -> None:
    shutil.rmtree(next(runs.glob(f"toy__{method}__*")))
    make_run(runs, method, "p", durations)


def test_update_writes_a_sorted_reference_that_reads_back_exactly(setup, capsys):
    runs, tol, ref = setup
    text = ref.read_text().splitlines()
    assert text[0] == "method,prompt,seed,seconds,metric,value"
    assert "full,p,0,1,clip_first[toy-clip],0.9" in text and "full,p,0,1,kv_bytes,1024" in text
    assert not [x for x in text if "latency" in x or ",fps," in x]  # skipped: not stored
    assert [p.name for p in ref.parent.iterdir()] == ["table.csv"]  # no temporary file left
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 0 and "regress: PASS: 0 outside tolerance, 0 missing, 0 failed, 0 moved" in out


def test_within_tolerance_passes_and_lists_what_moved(setup, capsys):
    runs, tol, ref = setup
    rewrite(runs, "sink", {1.0: {"psnr": 20.4, "clip_first[toy-clip]": 0.905, "fps": 99.0}, 2.0: {"psnr": 18.0}})
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 0
    moved = [x.split() for x in out.splitlines() if x.startswith("moved")]
    assert [x[5] for x in moved] == ["clip_first[toy-clip]", "psnr"]  # fps is skipped
    assert "abs 0.5" in out and "rel 0.01" in out
    assert "2 moved within tolerance" in out


def test_outside_tolerance_fails_with_exit_1_and_names_the_metric(setup, capsys):
    runs, tol, ref = setup
    rewrite(runs, "sink", {1.0: {"psnr": 21.0, "clip_first[toy-clip]": 0.9}, 2.0: {"psnr": 18.0}})
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 1
    (line,) = [x for x in out.splitlines() if x.startswith("REGRESSION")]
    assert line.split()[:9] == ["REGRESSION", "sink", "p", "0", "1", "psnr", "20", "21", "+1"]
    assert line.endswith("abs 0.5")
    assert out.splitlines()[-1].startswith("regress: FAIL: 1 outside tolerance")


def test_missing_rows_and_metrics_fail(setup, capsys):
    runs, tol, ref = setup
    rewrite(runs, "sink", {1.0: {"psnr": 20.0}})  # clip metric and the 2 s row gone
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 1
    missing = [x.split() for x in out.splitlines() if x.startswith("missing")]
    assert [(x[4], x[5]) for x in missing] == [("2", "*"), ("1", "clip_first[toy-clip]")]
    assert "2 missing" in out


def test_a_failed_run_is_reported_as_failed(setup, capsys):
    runs, tol, ref = setup
    shutil.rmtree(next(runs.glob("toy__full__*")))
    make_run(runs, "full", "p", {}, status="failed: out of memory")
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 1
    failed = [x for x in out.splitlines() if x.startswith("failed")]
    assert len(failed) == 2 and all("failed: out of memory" in x for x in failed)
    make_run(runs, "uniform", "p", {}, status="failed: error")  # not in the reference: still a failure
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    (line,) = [x.split() for x in out.splitlines() if x.startswith("failed") and "uniform" in x]
    assert code == 1 and line[:6] == ["failed", "uniform", "p", "0", "*", "*"] and "3 failed," in out
    code, _, err = regress(capsys, runs, "--tolerances", tol, "--reference", ref, "--update")
    assert code == 2 and "status 'failed: out of memory'" in err and len(err.splitlines()) == 1


def test_new_rows_and_metrics_are_reported_and_fail_only_when_asked(setup, capsys):
    runs, tol, ref = setup
    make_run(runs, "uniform", "p", BASE)
    rewrite(runs, "sink", {1.0: {**BASE[1.0], "new_metric": 1.0}, 2.0: BASE[2.0]})
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 0 and "3 new" in out
    new = [x.split() for x in out.splitlines() if x.startswith("new")]
    assert {(x[1], x[5]) for x in new} == {("uniform", "*"), ("sink", "new_metric")}
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref, "--fail-on-new")
    assert code == 1 and "regress: FAIL" in out


def test_nan_equals_nan_and_staging_directories_are_ignored(tmp_path, capsys):
    runs, tol, ref = tmp_path / "runs", tmp_path / "tol.yaml", tmp_path / "ref.csv"
    tol.write_text("default: {abs: 0}\n")
    make_run(runs, "full", "p", {1.0: {"revisit_psnr_beyond": math.nan}})
    make_run(runs, "full", "p", {1.0: {"revisit_psnr_beyond": 3.0}}, name="toy__full__p__s0__0123456789.tmp-99")
    assert regress(capsys, runs, "--tolerances", tol, "--reference", ref, "--update")[0] == 0
    assert "full,p,0,1,revisit_psnr_beyond,nan" in ref.read_text()
    code, out, _ = regress(capsys, runs, "--tolerances", tol, "--reference", ref)
    assert code == 0 and "4 unchanged" in out


def test_tolerance_lookup_exact_key_first_then_patterns_in_order():
    tol = Tolerances("t.yaml", default=Tolerance(abs=1), skip=("latency_*",),
                     metrics={"clip_*": Tolerance(rel=0.1), "clip_text[toy-clip]": Tolerance(abs=2),
                              "clip_t*": Tolerance(abs=3), "lag[a]": Tolerance(abs=4)})
    assert tol.for_metric("clip_text[toy-clip]") == Tolerance(abs=2)
    assert tol.for_metric("clip_text[other]") == Tolerance(rel=0.1)
    assert tol.for_metric("lag[a]") == Tolerance(abs=4) and tol.for_metric("lag_a") == Tolerance(abs=1)
    assert tol.skipped("latency_p50_s") and not tol.skipped("fps")
    assert Tolerance(abs=0.5, rel=0.1).allowed(10.0) == 1.0 and Tolerance(abs=0.5, rel=0.1).allowed(1.0) == 0.5
    assert str(Tolerance()) == "exact" and str(Tolerance(abs=1e-6, rel=0.01)) == "abs 1e-06, rel 0.01"


@pytest.mark.parametrize("text, expected", [
    ("tolerance: {abs: 1}\n", "tol.yaml: tolerance: unknown key; allowed: default, metrics, skip, sweep"),
    ("metrics:\n  psnr: {absolute: 1}\n", "tol.yaml: metrics.psnr.absolute: unknown key; allowed: abs, rel"),
    ("default: {abs: -1}\n", "tol.yaml: default.abs=-1: not a tolerance; allowed: a number >= 0"),
    ("metrics:\n  psnr: {rel: lots}\n", "tol.yaml: metrics.psnr.rel='lots': not a tolerance; allowed: a number >= 0"),
    ("metrics:\n  psnr: 0.1\n", "tol.yaml: metrics.psnr=0.1: not a mapping; allowed: {abs: X, rel: Y}"),
    ("skip: latency_*\n", "tol.yaml: skip='latency_*': allowed: a list of strings"),
    ("- 1\n", "tolerances='tol.yaml': not a mapping; allowed keys: default, metrics, skip, sweep"),
])
def test_bad_tolerance_files_are_one_line_errors(tmp_path, capsys, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path / "runs", "full", "p", BASE)
    (tmp_path / "tol.yaml").write_text(text)
    code, out, err = regress(capsys, "runs", "--tolerances", "tol.yaml", "--reference", "ref.csv")
    assert code == 2 and not out
    assert err == f"forcebench: error: {expected}\n"


def test_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tol.yaml").write_text("default: {abs: 0}\n")
    (tmp_path / "empty").mkdir()
    cases = [
        (["empty"], "runs='empty': no finished run directories found there"),
        (["runs", "--tolerances", "nope.yaml"], "tolerances='nope.yaml': no such file; allowed: a YAML file"),
        (["runs"], "reference='ref.csv': no such file; create it on purpose with --update"),
    ]
    make_run(tmp_path / "runs", "full", "p", BASE)
    for args, expected in cases:
        args = [*args, "--reference", "ref.csv"] + ([] if "--tolerances" in args else ["--tolerances", "tol.yaml"])
        code, _, err = regress(capsys, *args)
        assert code == 2 and err.startswith(f"forcebench: error: {expected}") and err.count("\n") == 1, err
    (tmp_path / "ref.csv").write_text("method,prompt,value\n")
    code, _, err = regress(capsys, "runs", "--tolerances", "tol.yaml", "--reference", "ref.csv")
    assert code == 2 and "allowed: method, prompt, seed, seconds, metric, value" in err
    make_run(tmp_path / "runs", "full", "p", BASE, name="toy__full__p__s0__other")
    code, _, err = regress(capsys, "runs", "--tolerances", "tol.yaml", "--reference", "ref.csv")
    assert code == 2 and "share method, prompt and seed" in err and err.count("\n") == 1
