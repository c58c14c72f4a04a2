"""Check every job of a command line before any work: compose, validate, one-line errors.

For ``-m`` (multirun) the sweep is expanded exactly as Hydra's basic sweeper does
(command-line sweeps plus ``hydra.sweeper.params`` from a sweep preset) and every
combination is composed and validated, so a bad value anywhere in a sweep fails it
before the first rollout.
"""

from __future__ import annotations

import itertools

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from bench.config import CONF_DIR, RunConfig, one_line, register_schemas, to_run_config, validate
from bench.errors import ConfigError

MAX_JOBS = 10_000


def _compose(overrides: list[str], with_hydra: bool = False):
    try:
        return compose("config", overrides=overrides, return_hydra_config=with_hydra)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None


def expand_sweep(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of a multirun, in the basic sweeper's order."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides(overrides)
    except HydraException as err:
        raise ConfigError(one_line(err)) from None
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    cfg = _compose(fixed, with_hydra=True)
    preset = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or {}, resolve=False)
    cli_keys = {o.get_key_element() for o in parsed}
    lines = [f"{k}={v}" for k, v in preset.items() if k not in cli_keys] + list(overrides)
    axes = []
    for o in parser.parse_overrides(lines):
        if o.is_sweep_override():
            key = o.get_key_element()
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    jobs = [list(combo) for combo in itertools.product(*axes)]
    if len(jobs) > MAX_JOBS:
        raise ConfigError(f"sweep has {len(jobs)} jobs; allowed: at most {MAX_JOBS}")
    return jobs


def check_command_line(overrides: list[str], multirun: bool) -> list[RunConfig]:
    """Compose and validate every job; raises ConfigError (one line) on the first bad one."""
    register_schemas()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        jobs = expand_sweep(overrides) if multirun else [list(overrides)]
        runs = []
        for job in jobs:
            run = to_run_config(_compose(job))
            validate(run)
            runs.append(run)
    return runs
