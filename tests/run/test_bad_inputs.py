"""Bad input on every command: exit status 2, exactly one line on stderr naming the bad value,
and nothing written. Also: run directories whose summary.json is not a run summary are
reported (one warning line each) and skipped while the command goes on.

Every command runs in process (``bench.cli.main``) in a scratch directory holding the inputs
(checkpoints, prompt files, role maps, reference and tolerance files, synthetic run
directories); a snapshot of that directory and of the test's tmp_path is compared before and
after each command.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import TINY, TINY_OVERRIDES
from safetensors.torch import save_file
from synthetic_runs import write_run

import bench.cli
import bench.input_checks
import bench.tools.chunk_timing
import bench.tools.evaluate_toy
import bench.tools.head_audit
import bench.tools.kernel_bench
import bench.tools.profile
import bench.tools.train_backbone
import bench.tools.train_encoder
from bench.cli import main
from bench.models.toy import ToyConfig, ToyDiT
from bench.preflight import check_command_line

WORLD = "forest blocks, red square bouncing, camera pans right"
BASE_RUN = [*TINY_OVERRIDES, "durations=[1]", "steps=1", "prompts=toy_smoke", "progress=false", "out_dir={tmp}/out"]
VALUES = {"continuation_psnr": 20.0, "latency_mean_s": 0.1, "kv_bytes": 4096.0}
DIRECTIONS = {"continuation_psnr": True, "latency_mean_s": False, "kv_bytes": False}


def write_checkpoints(work: Path) -> None:
    """A checkpoint of the tiny toy backbone and one broken copy of it per way of breaking it."""
    state = ToyDiT(ToyConfig(**TINY)).state_dict()
    save_file(state, str(work / "good.safetensors"))
    data = (work / "good.safetensors").read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    (work / "empty.safetensors").write_bytes(b"")
    (work / "trunc.safetensors").write_bytes(data[: len(data) // 2])
    (work / "corrupt.safetensors").write_bytes(data[:8] + b"{" * header_len + data[8 + header_len:])
    (work / "random.safetensors").write_bytes(os.urandom(4096))
    renamed = dict(state)
    renamed["blocks.0.qkv.weight_renamed"] = renamed.pop("blocks.0.qkv.weight")
    save_file(renamed, str(work / "renamed.safetensors"))
    save_file(ToyDiT(ToyConfig(**{**TINY, "mlp_ratio": 4})).state_dict(), str(work / "bigger.safetensors"))
    save_file({k: v.to(torch.int64) for k, v in state.items()}, str(work / "int64.safetensors"))
    (work / "wan_folder").mkdir()  # a diffusers-style checkpoint folder whose weights file is broken
    (work / "wan_folder" / "diffusion_pytorch_model.safetensors").write_bytes(data[: len(data) // 3])


def write_prompt_files(work: Path) -> None:
    (work / "bin.txt").write_bytes(b"\x00\xff\xfe\x80 binary")
    (work / "bin.yaml").write_bytes(b"\xff\xfe\x00\x01")
    (work / "escape.yaml").write_text(json.dumps([{"id": "x/../../../../var/ESCAPED", "text": WORLD}]))
    (work / "badstep.yaml").write_text(json.dumps([{"id": "s", "schedule": [{"at": 0, "txt": WORLD}]}]))
    (work / "switch.yaml").write_text(json.dumps([{"id": "s", "schedule": [
        {"at": 0, "text": WORLD}, {"at": 1, "text": "city stripes, red square bouncing, camera still"}]}]))


def write_report_inputs(work: Path) -> None:
    """Finished synthetic runs, role maps, reference and tolerance files."""
    for method in ("sink", "sliding_window", "control_stale"):
        for prompt in ("a", "b"):
            write_run(work / "runs", method, prompt, 0, (5.0,), lambda s: dict(VALUES), DIRECTIONS)
    (work / "empty_dir").mkdir()
    (work / "afile").write_text("a file, not a directory\n")
    (work / "bin.bin").write_bytes(b"\x00\x01\x02\xff")
    (work / "noroles.json").write_text(json.dumps({"model": "toy", "stats": {}}))
    (work / "badjson.json").write_text("{\"roles\": [")
    (work / "tol.yaml").write_text("default: {abs: 0}\n")
    (work / "tol_bin.yaml").write_bytes(b"\xff\xfe\x00\x01")
    (work / "tol_list.yaml").write_text("- 1\n")
    (work / "tol_unknown.yaml").write_text("defaults: {abs: 0}\n")
    (work / "tol_neg.yaml").write_text("default: {abs: -1}\n")
    (work / "ref_bin.csv").write_bytes(b"\x00\xff\xfe\x80")
    (work / "ref_cols.csv").write_text("method,prompt,value\nsink,a,1\n")
    (work / "ref_value.csv").write_text("method,prompt,seed,seconds,metric,value\nsink,a,zero,5,kv_bytes,1\n")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """The scratch directory every command of this module runs in (its inputs written once)."""
    work = tmp_path_factory.mktemp("work")
    write_checkpoints(work)
    write_prompt_files(work)
    write_report_inputs(work)
    return work


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its kind, size and modification time."""
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            stat = path.lstat()
            out[str(path)] = (path.is_dir(), stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
    return out


def _refuse(*args, **kwargs):
    raise AssertionError("the bad input passed the checks and work started")


@pytest.fixture
def in_work(work, tmp_path, monkeypatch):
    """Run in ``work``, without W&B credentials, with every command's work refused."""
    monkeypatch.chdir(work)
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL",
                 "FORCEBENCH_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no_netrc"))
    monkeypatch.setattr(bench.cli, "_hydra", _refuse, raising=False)
    monkeypatch.setattr(bench.tools.train_backbone, "train_backbone", _refuse)
    monkeypatch.setattr(bench.tools.profile, "profile_heads", _refuse)
    monkeypatch.setattr(bench.tools.evaluate_toy, "execute", _refuse)
    monkeypatch.setattr(bench.tools.kernel_bench, "run_benchmark", _refuse)
    monkeypatch.setattr(bench.tools.chunk_timing, "measure", _refuse)
    monkeypatch.setattr(bench.tools.head_audit, "audit_heads", _refuse)
    monkeypatch.setattr(bench.tools.train_encoder, "train_encoder", _refuse)
    return work


def run_argv(*extra: str, multirun: bool = False) -> list[str]:
    """``forcebench run`` on the tiny toy backbone with ``extra`` overrides (replacing base ones)."""
    keys = {e.split("=", 1)[0].lstrip("+") for e in extra}
    base = [o for o in BASE_RUN if o.split("=", 1)[0] not in keys]
    return ["run", *(["-m"] if multirun else []), *base, *extra]


def prompts(pid: str, text: str = WORLD) -> str:
    """An override that replaces the prompt set's prompts by one entry."""
    return f"prompts.prompts=[{{id: '{pid}', text: '{text}'}}]"


CASES = [
    # forcebench run: paths and identifiers
    (run_argv("out_dir="), "out_dir=''"),
    (run_argv("out_dir=afile"), "out_dir='afile'"),
    (run_argv("out_dir=afile/sub"), "out_dir='afile/sub'"),
    (run_argv(prompts("x/../../../../var/ESCAPED")), "'x/../../../../var/ESCAPED'"),
    (run_argv(prompts("a/b")), "'a/b'"),
    (run_argv(prompts("..")), "'..'"),
    (run_argv(prompts("p" * 101)), "p" * 101),
    (run_argv("prompts.file=escape.yaml"), "'x/../../../../var/ESCAPED'"),
    (run_argv("prompts.file=bin.txt"), "prompts.file='bin.txt'"),
    (run_argv("prompts.file=bin.yaml"), "prompts.file='bin.yaml'"),
    (run_argv("prompts.file=badstep.yaml"), "'txt'"),
    # forcebench run: prompts the toy backbone cannot render
    (run_argv(prompts("p", "purple blocks, red square bouncing, camera still")), "'purple'"),
    (run_argv(prompts("p", "")), "prompt ''"),
    (run_argv("prompts.file=switch.yaml"), "'city stripes, red square bouncing, camera still'"),
    # forcebench run: keys outside the schema and out-of-range values
    (run_argv("+method.windw=3"), "method.windw"),
    (run_argv("+durration=[60]"), "durration"),
    (run_argv("++seedd=1"), "seedd"),
    (run_argv("durations=[3,3]"), "durations=[3.0, 3.0]"),
    (run_argv("durations=[inf]"), "durations=[inf]"),
    (run_argv("durations=[1e308]"), "durations=[1e+308]"),
    (run_argv("durations=[nan]"), "durations=[nan]"),
    (run_argv("durations=[-1]"), "durations=[-1.0]"),
    (run_argv("steps=0"), "steps=0"),
    (run_argv("steps=1001"), "steps=1001"),
    (run_argv("sampler=ddim"), "sampler='ddim'"),
    (run_argv("dtype=float16"), "dtype='float16'"),
    (run_argv("dtype=bfloat16"), "dtype='bfloat16'"),
    (run_argv("metrics.weights_dir=nowhere"), "metrics.weights_dir='nowhere'"),
    (run_argv("metrics.weights_dir=afile"), "metrics.weights_dir='afile'"),
    (run_argv("metrics=toy", "metrics.strict=true", "metrics.weights_dir=empty_dir"), "metrics.strict=true"),
    (run_argv("logger=wandb", "logger.mode=online"), "logger.mode='online'"),
    (run_argv("method=head_forcing", "method.role_map=noroles.json"), "noroles.json"),
    (run_argv("method=head_forcing", "method.role_map=bin.bin"), "bin.bin"),
    (run_argv("method=two_tier", "method.role_map=badjson.json"), "badjson.json"),
    (["run", "--foo", "steps=1"], "'--foo'"),
    # forcebench run: checkpoints, from their headers
    (run_argv("model.checkpoint=nowhere.safetensors"), "nowhere.safetensors"),
    (run_argv("model.checkpoint=empty.safetensors"), "'empty.safetensors': empty file"),
    (run_argv("model.checkpoint=trunc.safetensors"), "'trunc.safetensors': not a valid safetensors"),
    (run_argv("model.checkpoint=corrupt.safetensors"), "'corrupt.safetensors': not a valid safetensors"),
    (run_argv("model.checkpoint=random.safetensors"), "'random.safetensors': not a valid safetensors"),
    (run_argv("model.checkpoint=renamed.safetensors"), "'renamed.safetensors' does not match the architecture"),
    (run_argv("model.checkpoint=bigger.safetensors"), "'bigger.safetensors': blocks.0.mlp.0.weight has shape"),
    (run_argv("model.checkpoint=int64.safetensors"), "has dtype int64"),
    (["run", "model=wan_tiny", "model.checkpoint=wan_folder", "metrics=none", "durations=[1]", "steps=1",
      "out_dir={tmp}/out"], "wan_folder/diffusion_pytorch_model.safetensors"),
    (["run", "model=wan_tiny", "model.checkpoint=random.safetensors", "metrics=none", "durations=[1]", "steps=1",
      "out_dir={tmp}/out"], "'random.safetensors': not a valid safetensors"),
    # forcebench run -m: a bad value in any job fails the sweep
    (run_argv("model.checkpoint=good.safetensors,corrupt.safetensors", multirun=True), "corrupt.safetensors"),
    (run_argv("seed=0,1", "+method.windw=3", multirun=True), "method.windw"),
    (run_argv("durations=[1],[3,3]", multirun=True), "durations=[3.0, 3.0]"),
    (run_argv("dtype=float32,float16", multirun=True), "dtype='float16'"),
    # forcebench table
    (["table", "nowhere"], "runs='nowhere'"),
    (["table", "afile"], "runs='afile'"),
    (["table", "runs", "--bogus"], "--bogus"),
    # forcebench leaderboard
    (["leaderboard", "runs", "--out", "afile"], "--out='afile'"),
    (["leaderboard", "runs", "--out", "afile/board"], "--out='afile/board'"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--screenshot", "runs"], "--screenshot='runs'"),
    (["leaderboard", "nowhere", "--out", "{tmp}/board"], "runs='nowhere'"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--bootstrap", "0"], "--bootstrap=0"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--bootstrap", "many"], "'many'"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--alpha", "2"], "--alpha=2.0"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--primary", "nope"], "--primary='nope'"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--baseline", "nope"], "--baseline='nope'"),
    (["leaderboard", "runs", "--out", "{tmp}/board", "--metrics", "nope"], "--metrics='nope'"),
    # forcebench validate
    (["validate", "nowhere"], "runs='nowhere'"),
    (["validate", "runs", "--seconds", "5", "--alpha", "0"], "--alpha=0.0"),
    (["validate", "runs", "--seconds", "5", "--bootstrap", "0"], "--bootstrap=0"),
    (["validate", "runs", "--seconds", "5", "--metric", "nope"], "'nope'"),
    (["validate", "runs", "--seconds", "5", "--out", "afile"], "--out='afile'"),
    (["validate", "runs", "--seconds", "soon"], "'soon'"),
    # forcebench regress: malformed reference and tolerance files are bad input, never a regression
    (["regress", "runs", "--tolerances", "tol.yaml", "--reference", "ref_bin.csv"], "reference='ref_bin.csv'"),
    (["regress", "runs", "--tolerances", "tol.yaml", "--reference", "ref_cols.csv"], "reference='ref_cols.csv'"),
    (["regress", "runs", "--tolerances", "tol.yaml", "--reference", "ref_value.csv"], "'zero'"),
    (["regress", "runs", "--tolerances", "tol.yaml", "--reference", "runs"], "reference='runs'"),
    (["regress", "runs", "--tolerances", "tol.yaml", "--reference", "nope.csv"], "reference='nope.csv'"),
    (["regress", "runs", "--tolerances", "tol.yaml", "--update", "--reference", "afile/ref.csv"],
     "reference='afile/ref.csv'"),
    (["regress", "runs", "--tolerances", "tol_bin.yaml", "--reference", "ref_cols.csv"], "tolerances='tol_bin.yaml'"),
    (["regress", "runs", "--tolerances", "runs", "--reference", "ref_cols.csv"], "tolerances='runs'"),
    (["regress", "runs", "--tolerances", "tol_list.yaml", "--reference", "ref_cols.csv"], "tolerances='tol_list.yaml'"),
    (["regress", "runs", "--tolerances", "tol_unknown.yaml", "--reference", "ref_cols.csv"], "defaults"),
    (["regress", "runs", "--tolerances", "tol_neg.yaml", "--reference", "ref_cols.csv"], "default.abs=-1"),
    (["regress", "nowhere", "--tolerances", "tol.yaml", "--reference", "ref_cols.csv"], "runs='nowhere'"),
    (["regress", "runs", "--show", "all"], "'all'"),
    # forcebench train backbone
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--model", "foo=1"], "'foo=1'"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--model", "dim"], "'dim'"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--model", "dim=wide"], "'dim=wide'"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--model", "name=big"], "'name=big'"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--model", "dim=0"], "model.dim=0"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--steps", "0"], "--steps=0"),
    (["train", "backbone", "--out", "{tmp}/t.safetensors", "--lr", "fast"], "'fast'"),
    (["train", "backbone", "--out", "{tmp}/t.pt"], "t.pt"),
    (["train", "backbone", "--out", "runs"], "--out='runs'"),
    (["train", "unicorn"], "'unicorn'"),
    # forcebench profile
    (["profile", "--out", "{tmp}/r.json", "--weights", "nowhere.safetensors"], "--weights='nowhere.safetensors'"),
    (["profile", "--out", "{tmp}/r.json", "--weights", "corrupt.safetensors"], "--weights='corrupt.safetensors'"),
    (["profile", "--out", "{tmp}/r.json", "--weights", "good.safetensors"], "--weights='good.safetensors'"),
    (["profile", "--out", "{tmp}/r.json", "--prompts", "0"], "--prompts=0"),
    (["profile", "--out", "{tmp}/r.json", "--steps", "0"], "--steps=0"),
    (["profile", "--out", "{tmp}/r.json", "--local-mass", "2"], "--local-mass=2.0"),
    (["profile", "--out", "runs"], "--out='runs'"),
    (["profile", "--bogus"], "--bogus"),
    # forcebench evaluate-toy
    (["evaluate-toy", "nowhere", "--out", "{tmp}/eval"], "nowhere"),
    (["evaluate-toy", "runs", "--out", "afile"], "--out='afile'"),
    (["evaluate-toy", "runs", "--out", "{tmp}/eval", "--bootstrap", "0"], "--bootstrap=0"),
    (["evaluate-toy", "runs", "--bootstrap", "lots"], "'lots'"),
    # forcebench bench-kernels, time-chunks, audit-heads, train encoder; choices and bounds of options
    (["bench-kernels", "--repeats", "0", "--out", "{tmp}/k"], "--repeats=0: allowed: >= 1"),
    (["bench-kernels", "--dtype", "float8", "--out", "{tmp}/k"], "'float8'"),
    (["bench-kernels", "--device", "tpu", "--out", "{tmp}/k"], "--device='tpu': allowed: cpu, cuda"),
    (["bench-kernels", "--out", "afile"], "--out='afile'"),
    (["time-chunks", "--out", "afile"], "--out='afile'"),
    (["time-chunks", "--seconds", "5", "--warmup-seconds", "6", "--out", "{tmp}/t"], "--seconds=5.0"),
    (["audit-heads", "--out", "afile"], "--out='afile'"),
    (["audit-heads", "--out", "{tmp}/a", "--steps", "0"], "--steps=0"),
    (["train", "encoder", "--out", "runs"], "--out='runs'"),
    (["profile", "--classifier", "magic", "--out", "{tmp}/r.json"], "'magic'"),
    (["profile", "--threads", "0", "--out", "{tmp}/r.json"], "--threads=0: allowed: >= 1"),
    (["regress", "runs", "--show", "-1"], "--show=-1: allowed: >= 0"),
]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("forcebench: error: "), err
    return lines[0]


@pytest.mark.parametrize("argv, named", CASES, ids=[f"{i:03d}-{c[0][0]}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(in_work, tmp_path, capsys, argv, named):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(in_work, tmp_path)
    code = main(argv)
    line = one_error_line(capsys)
    assert code == 2, line
    assert named in line
    assert snapshot(in_work, tmp_path) == before


def test_enough_bad_inputs_over_every_command():
    commands = {argv[0] for argv, _ in CASES}
    assert len(CASES) >= 60
    assert set(bench.cli.COMMANDS) <= commands
    assert any("-m" in argv for argv, _ in CASES)


def test_an_out_dir_this_user_cannot_write_is_refused(in_work, tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(bench.input_checks.os, "access", lambda path, mode: Path(path) != locked)
    before = snapshot(in_work, tmp_path)
    assert main(run_argv(f"out_dir={locked}/runs")) == 2
    assert f"{locked} is not writable" in one_error_line(capsys)
    assert main(["leaderboard", "runs", "--out", str(locked)]) == 2
    assert f"--out='{locked}'" in one_error_line(capsys)
    assert snapshot(in_work, tmp_path) == before


def test_good_inputs_pass_the_same_checks(in_work, tmp_path, role_map_file):
    """The checks refuse only what is bad: a fitting checkpoint, user prompt files with safe ids,
    schedules that keep the scene and ``+ablation`` (a config group the schema knows) pass."""
    (tmp_path / "mine.yaml").write_text(json.dumps([{"id": "mine.v1-a", "schedule": [
        {"at": 0, "text": WORLD}, {"at": 1, "text": "forest blocks, white square bouncing, camera still"}]}]))
    (run,) = check_command_line([o.replace("{tmp}", str(tmp_path)) for o in BASE_RUN] + [
        "model.checkpoint=good.safetensors", f"prompts.file={tmp_path / 'mine.yaml'}", "method=head_forcing",
        f"method.role_map={role_map_file}", "+ablation=no_episodic"], multirun=False)
    assert run.method.episodic is False and [p.id for p in run.prompts.selected()][-1] == "mine.v1-a"


# --- run directories whose summary.json is not a run summary --------------------------


BROKEN_SUMMARIES = {
    "zz_binary": b"\x00\xff\xfe\x80",
    "zz_malformed": b'{"status": "ok", "run": ',
    "zz_list": b'[{"status": "ok"}]',
    "zz_fields": b'{"status": "ok", "method": "sink"}',
}


@pytest.fixture
def mixed_runs(tmp_path) -> Path:
    """Finished runs of two methods plus one run directory per kind of broken summary.json."""
    root = tmp_path / "runs"
    for method in ("sink", "sliding_window"):
        for prompt in ("a", "b"):
            write_run(root, method, prompt, 0, (5.0,), lambda s: dict(VALUES), DIRECTIONS)
    for name, data in BROKEN_SUMMARIES.items():
        (root / name).mkdir()
        (root / name / "summary.json").write_bytes(data)
    return root


def warnings_of(err: str) -> list[str]:
    lines = err.splitlines()
    warned = [line for line in lines if line.startswith("forcebench: warning: ")]
    assert len(warned) == len(BROKEN_SUMMARIES), err
    for name in BROKEN_SUMMARIES:
        assert sum(f"{name}/summary.json" in line for line in warned) == 1, err
    return [line for line in lines if line not in warned]


def test_table_reports_and_skips_broken_summaries(mixed_runs, capsys):
    assert main(["table", str(mixed_runs)]) == 0
    out, err = capsys.readouterr()
    assert warnings_of(err) == []
    assert any(line.startswith("sink") for line in out.splitlines()) and "sliding_window" in out


def test_validate_and_regress_report_and_skip_broken_summaries(mixed_runs, tmp_path, capsys):
    code = main(["validate", str(mixed_runs), "--metric", "continuation_psnr", "--seconds", "5"])
    assert code == 2  # no negative control among these runs: bad input, said in one line after the warnings
    rest = warnings_of(capsys.readouterr().err)
    assert len(rest) == 1 and "control" in rest[0]
    (tmp_path / "tol.yaml").write_text("default: {abs: 0}\n")
    reference = tmp_path / "ref.csv"
    assert main(["regress", str(mixed_runs), "--tolerances", str(tmp_path / "tol.yaml"), "--reference",
                 str(reference), "--update"]) == 0
    assert warnings_of(capsys.readouterr().err) == []
    assert main(["regress", str(mixed_runs), "--tolerances", str(tmp_path / "tol.yaml"), "--reference",
                 str(reference)]) == 0
    out, err = capsys.readouterr()
    assert warnings_of(err) == [] and "regress: PASS" in out


def test_leaderboard_reports_and_skips_broken_summaries(mixed_runs, tmp_path, capsys):
    board = tmp_path / "board"
    assert main(["leaderboard", str(mixed_runs), "--out", str(board), "--bootstrap", "20",
                 "--head-roles", str(tmp_path / "no_roles")]) == 0
    assert warnings_of(capsys.readouterr().err) == []
    assert "sliding_window" in (board / "leaderboard.md").read_text()
