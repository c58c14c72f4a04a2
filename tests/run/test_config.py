"""Config validation: every bad value fails before any work with a one-line message."""

from __future__ import annotations

from dataclasses import fields

import pytest

from bench.config import select_methods
from bench.preflight import check_command_line
from core.errors import ConfigError
from methods import METHODS


def error_of(overrides, multirun=False) -> str:
    with pytest.raises(ConfigError) as info:
        check_command_line(overrides, multirun)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_compose():
    (run,) = check_command_line([], multirun=False)
    assert run.model.name == "toy" and run.method.name == "full"
    assert run.durations == [5.0, 30.0] and run.frames() == [21, 120]


def test_issue_example_overrides():
    (run,) = check_command_line(["method=sink", "method.sink_frames=3", "durations=[5,30]"], False)
    assert run.method.sink_frames == 3 and run.method.budget_frames == 12


@pytest.mark.parametrize("overrides, expected", [
    (["method=foo"], "method='foo': no such method option; allowed: control_no_history, control_random_eviction, "
                     "control_scrambled_positions, control_stale, deep_forcing, dummy_forcing, "),
    (["method.name=foo"], "method.name='foo' is not a registered method; allowed: control_no_history, "
                          "control_random_eviction, control_scrambled_positions, control_stale, deep_forcing, "
                          "dummy_forcing, "),
    (["method=sliding_window", "method.budget_frames=-1"], "method.budget_frames=-1: allowed: >= 0"),
    (["method=sink", "method.sink_frames=13"],
     "method.sink_frames=13: the sink must fit the budget; allowed: <= method.budget_frames=12"),
    (["durations=[5,0]"], "durations=[5.0, 0.0]: every duration must be > 0 seconds"),
    (["durations=[]"], "durations=[]: give at least one duration in seconds"),
    (["durations=[300]"], "durations: 1200 frames exceed the RoPE table of 1024 positions for method 'full'"),
    (["method.foo=1"], "method.foo: unknown key for FullConfig; allowed keys: name"),
    (["method=sink", "method.sink_frames=abc"], "method.sink_frames: Value 'abc' of type 'str' could not be converted to Integer"),
    (["foo=1"], "foo: unknown key for RunConfig; allowed keys: model, method, prompts"),
    (["model.dim=100"], "model.dim=100: dim / heads must be an even head_dim >= 6"),
    (["model.checkpoint=/nowhere/toy.safetensors"],
     "model.checkpoint='/nowhere/toy.safetensors': file not found (looked at /nowhere/toy.safetensors)"),
    (["method=sink", "method.positions=repacked", "method.budget_frames=19"], "allowed: <= 18"),
    (["method=sink", "method.positions=relative"], "method.positions='relative': allowed: absolute, repacked"),
    (["sampler=ddim"], "sampler='ddim': allowed: euler, renoise"),
    (["steps=0"], "steps=0: allowed: >= 1"),
    (["prompts.select=[nope]"], "prompts.select=['nope']: allowed ids: forest_blocks, forest_stripes"),
    (["prompts=missing_set"], "prompts='missing_set': no such prompts option; allowed:"),
    (["attention=flash"], "attention='flash': allowed: auto, reference, triton"),
])
def test_bad_values_give_one_line_errors(overrides, expected):
    assert expected in error_of(overrides)


def test_sweep_presets_select_methods_by_pattern():
    """A preset names a selector, not methods: a new bounded method joins equal_budget by being registered."""
    assert select_methods("headline").split(",") == ["head_forcing", "sink", "sliding_window"]
    assert select_methods("controls").split(",") == sorted(n for n in METHODS.names() if n.startswith("control_"))
    assert select_methods("all").split(",") == METHODS.names()
    assert "full" not in select_methods("budgeted").split(",") and "sink" in select_methods("budgeted").split(",")
    both = select_methods("headline+budgeted").split(",")
    assert both[:3] == ["head_forcing", "sink", "sliding_window"] and len(both) == len(set(both))  # no repeats
    with pytest.raises(ConfigError, match="sweep methods selector='bogus': allowed: all, budgeted, controls, "):
        select_methods("bogus")


def test_triton_attention_needs_cuda_or_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "attention='triton' on device='cpu': attention backend 'triton' needs CUDA tensors" in error_of(
        ["attention=triton"])
    monkeypatch.setenv("FORCEBENCH_ATTENTION", "triton")  # the environment variable is checked too
    assert "needs CUDA tensors" in error_of([])
    assert check_command_line(["attention=reference"], False)[0].attention == "reference"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert check_command_line(["attention=triton"], False)[0].attention == "triton"


@pytest.mark.slow  # in `make test-all`; over 20 s on 2 cores
def test_multirun_expands_and_validates_every_job():
    runs = check_command_line(["method=full,sink", "seed=0,1"], multirun=True)
    assert [(r.method.name, r.seed) for r in runs] == [("full", 0), ("full", 1), ("sink", 0), ("sink", 1)]
    controls = sorted(n for n in METHODS.names() if n.startswith("control_"))
    budgeted = [e.name for e in METHODS if "budget_frames" in {f.name for f in fields(e.config)}]
    default = check_command_line(["sweep=default"], multirun=True)
    assert [(r.method.name, r.seed) for r in default] == [
        (m, s) for m in ["head_forcing", "sink", "sliding_window", *controls] for s in (0, 1, 2)]
    assert all(r.prefix() == 18 for r in default)  # the toy world's ground-truth prefix
    # the bounded controls run at sliding_window's default budget: the same KV bytes
    assert {r.method.budget_frames for r in default if r.method.name in controls[:3] + ["sliding_window"]} == {12}
    equal = check_command_line(["sweep=equal_budget"], multirun=True)
    assert len(equal) == 3 * len(budgeted) and {r.method.budget_frames for r in equal} == {16}
    assert [r.method.name for r in equal][::3] == budgeted and {r.seed for r in equal} == {0, 1, 2}
    assert set(controls) < set(budgeted) and {"full", "head_forcing"} - set(budgeted) == {"full"}
    # a bad value in any one job of the sweep fails the whole sweep up front
    assert "durations: 1200 frames" in error_of(["method=sink,full", "durations=[300]"], multirun=True)


def test_repacked_sink_fits_long_durations():
    (run,) = check_command_line(["method=sink", "method.positions=repacked", "durations=[600]"], False)
    assert run.frames() == [2400]


def budgeted_methods() -> int:
    return sum("budget_frames" in {f.name for f in fields(e.config)} for e in METHODS)


@pytest.mark.parametrize("preset, jobs, prompt_set, prompts", [
    ("default", lambda: 21, "toy", 3), ("equal_budget", lambda: 3 * budgeted_methods(), "toy", 16),
    ("ablations", lambda: 18, "toy", 16), ("multi_prompt", lambda: 3 * len(METHODS.names()), "toy_multi", 8)])
def test_sweep_presets_compose_every_job(preset, jobs, prompt_set, prompts):
    jobs = jobs()
    runs = check_command_line([f"sweep={preset}"], multirun=True)
    assert len(runs) == jobs and len({(r.method.shown_name, r.seed) for r in runs}) == jobs
    assert all(r.prompts.name == prompt_set and len(r.prompts.selected()) == prompts for r in runs)
    if preset == "ablations":
        labels = {r.method.shown_name: r.method for r in runs}
        assert labels["hf[no_episodic]"].episodic is False and labels["hf[no_rope_reencode]"].rope_reencode is False
        assert labels["hf[shuffled_roles]"].roles == "shuffled" and labels["head_forcing"].roles == "profiled"
        assert all(r.method.budget_frames == 16 for r in runs)
