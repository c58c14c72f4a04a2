"""Check every job of a command line before any work: compose, validate, one-line errors.

For ``-m`` (multirun) the sweep is expanded exactly as Hydra's basic sweeper does
(command-line sweeps plus ``hydra.sweeper.params`` from a sweep preset) and every
combination is composed and validated, so a bad value anywhere in a sweep fails it
before the first rollout. Every distinct model checkpoint of the jobs is then checked from
its header (bench/checkpoint_check.py).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.checkpoint_check import check_checkpoint
from bench.config import CONF_DIR, RunConfig, one_line, register_schemas, to_run_config, validate
from core.errors import ConfigError
from core.geometry import Geometry
from core.paths import existing_path

MAX_JOBS = 10_000
# Launchers whose jobs run on other machines: the device is checked by each job (execute()
# validates again there), not on the machine that submits the sweep.
REMOTE_LAUNCHERS = ("hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",)


def _compose(overrides: list[str], with_hydra: bool = False):
    try:
        return compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None


def _parse(overrides: list[str]):
    try:
        return OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(one_line(err)) from None


def sweep_lines(overrides: list[str]) -> list[str]:
    """Command-line overrides preceded by the sweep preset's ``hydra.sweeper.params``.

    The preset is found by composing only the group selections (keys without a dot), so
    that keys of a swept group's options (``method.budget_frames``) do not have to exist
    in the group's default option.
    """
    parsed = _parse(overrides)
    selections = [o.input_line for o in parsed if not o.is_sweep_override() and "." not in o.get_key_element()]
    cfg = _compose(selections, with_hydra=True)
    params = cfg.hydra.sweeper.get("params")
    preset = OmegaConf.to_container(params, resolve=True) if params else {}
    cli_keys = {o.get_key_element() for o in parsed}
    return [f"{k}={v}" for k, v in preset.items() if k not in cli_keys] + list(overrides)


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of a multirun, in the basic sweeper's order."""
    axes = []
    for o in _parse(sweep_lines(overrides)):
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    jobs = [list(combo) for combo in itertools.product(*axes)]
    if len(jobs) > MAX_JOBS:
        raise ConfigError(f"sweep has {len(jobs)} jobs; allowed: at most {MAX_JOBS}")
    return jobs


def multirun_overrides(overrides: list[str]) -> list[str]:
    """Overrides for Hydra's multirun in which options of a swept group can be set.

    Hydra composes one primary config from the non-sweep overrides, with each group at
    its default option, so ``-m method=sink,sliding_window method.budget_frames=3`` fails
    on the default ``full``. A key under a swept group becomes a one-value sweep
    (``method.budget_frames=choice(3)``), which Hydra applies per job instead.
    """
    parsed = _parse(sweep_lines(overrides))
    swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
    out = []
    for o in _parse(overrides):
        key = o.get_key_element()
        under_swept = any(key.startswith(f"{group}.") for group in swept)
        if under_swept and not o.is_sweep_override() and o.input_line.startswith(f"{key}="):
            out.append(f"{key}=choice({o.input_line.split('=', 1)[1]})")
        else:
            out.append(o.input_line)
    return out


def hydra_context():
    """Hydra's compose API rooted at conf/ (a context manager)."""
    register_schemas()
    return initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3")


def compose_run_config(overrides: list[str]) -> RunConfig:
    """The run config ``forcebench run`` composes from ``overrides`` (schema-checked only)."""
    with hydra_context():
        return to_run_config(_compose(overrides))


def model_geometry(model: str) -> Geometry:
    """Geometry of a configured backbone (conf/model/<model>.yaml), without building it."""
    return compose_run_config([f"model={model}", "model.checkpoint=null", "metrics=none"]).geometry()


def runs_elsewhere(job: list[str]) -> bool:
    """Whether the launcher a job's overrides select runs jobs on other machines (SLURM)."""
    return _compose(job, with_hydra=True).hydra.launcher.get("_target_") in REMOTE_LAUNCHERS


def check_checkpoints(runs: list[RunConfig]) -> None:
    """Check each distinct (model config, checkpoint) of the jobs once, from its header."""
    seen = set()
    for run in runs:
        model = run.model
        ident = json.dumps(asdict(model), sort_keys=True, default=str)
        if not model.checkpoint or ident in seen:
            continue
        seen.add(ident)
        file = existing_path(model.checkpoint, "model.checkpoint", "file or folder")
        check_checkpoint(file, "model.checkpoint", model.checkpoint, model.checkpoint_state())


def check_command_line(overrides: list[str], multirun: bool) -> list[RunConfig]:
    """Compose and validate every job, then check their checkpoints; raises ConfigError (one
    line) on the first bad one."""
    with hydra_context():
        jobs = expand_sweep(overrides) if multirun else [list(overrides)]
        local = not (multirun and runs_elsewhere(jobs[0]))
        runs = []
        for job in jobs:
            run = to_run_config(_compose(job))
            validate(run, local=local)
            runs.append(run)
    check_checkpoints(runs)
    return runs
