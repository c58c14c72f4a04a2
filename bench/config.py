"""Run configuration: dataclass schemas in Hydra's ConfigStore, composition and validation.

conf/config.yaml composes the groups model/, method/, prompts/, metrics/, logger/ and sweep/. Each
model and method option starts from the schema of its registered dataclass
(``/schema/model/<name>`` or ``/schema/method/<name>``), so unknown keys and wrong types
are rejected by OmegaConf, and each dataclass's ``__post_init__`` checks values when the
composed config is turned into objects (``to_run_config``); a key that a ``+`` override
adds outside the schema is refused there too. ``validate`` adds the checks that need the
backbone's geometry or the file system: durations that do not fit, the prompts and dtype the
backbone accepts, ``out_dir``, metric weights and the logger. Every failure is a one-line
``ConfigError``, raised before any work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import bench.models  # noqa: F401  (registers backbones)
import kernels
import methods  # noqa: F401  (registers methods)
from bench.input_checks import check_id, writable_dir
from bench.loggers import LOGGERS, check_logger
from bench.metric_checks import check_metrics
from bench.models.base import MODELS, ModelConfig
from bench.prompt_files import read_prompt_file
from core.dtypes import DTYPES
from core.errors import ConfigError, require
from core.geometry import Geometry
from core.paths import REPO_DIR
from core.world import TILE, VIEW_TILES
from methods.base import METHODS, MethodConfig
from methods.controls import CONTROL_PREFIX
from metrics.suite import MetricsConfig

CONF_DIR = REPO_DIR / "conf"
SAMPLERS = ("euler", "renoise")
WANDB_MODES = ("offline", "online", "disabled")
SPLITS = ("train", "heldout")
WORLD_FRAME_SHAPE = (3, VIEW_TILES * TILE, VIEW_TILES * TILE)
PREFIX_SOURCES = ("ground_truth", "other_seed")
MAX_STEPS = 1000
MAX_SECONDS = 3600.0  # one hour of video per run


@dataclass
class ScheduleItem:
    at: float = 0.0  # seconds from the start at which this prompt becomes active
    text: str = MISSING


@dataclass
class PromptEntry:
    """One video: a single prompt (``text``) or a multi-prompt ``schedule``."""

    id: str = MISSING
    text: str | None = None
    schedule: list[ScheduleItem] | None = None
    split: str = "train"  # train | heldout (vocabulary combinations training never sees)

    def __post_init__(self) -> None:
        check_id(self.id, "prompts.prompts.id")  # run directories are named after it
        require(self.split in SPLITS, f"prompts[{self.id}].split", self.split, f"allowed: {', '.join(SPLITS)}")
        for step in self.schedule or []:
            require(isinstance(step.text, str), f"prompts[{self.id}].schedule.text", step.text, "allowed: a string")
        require(self.text is None or isinstance(self.text, str), f"prompts[{self.id}].text", self.text,
                "allowed: a string")
        require((self.text is None) != (self.schedule is None), f"prompts[{self.id}]",
                "text and schedule" if self.text is not None else "neither text nor schedule",
                "give exactly one of text or schedule")
        if self.schedule is not None:
            times = [item.at for item in self.schedule]
            require(len(times) > 0 and times[0] == 0, f"prompts[{self.id}].schedule", times,
                    "must be non-empty and start at 0")
            require(all(a < b for a, b in zip(times, times[1:])), f"prompts[{self.id}].schedule",
                    times, "start times must increase")

    def timeline(self) -> list[tuple[float, str]]:
        """[(start second, prompt text)], starting at 0."""
        if self.text is not None:
            return [(0.0, self.text)]
        return [(float(item.at), item.text) for item in self.schedule]


@dataclass
class PromptSetConfig:
    name: str = MISSING
    prompts: list[PromptEntry] = field(default_factory=list)
    file: str | None = None  # more prompts from a .txt / .yaml file (bench/prompt_files.py)
    select: list[str] | None = None  # ids to run (default: all)

    def __post_init__(self) -> None:
        if self.file is not None:
            items = read_prompt_file(self.file)
            for item in items:
                if item.get("schedule") is not None:
                    item["schedule"] = [ScheduleItem(**step) for step in item["schedule"]]
            self.prompts = list(self.prompts) + [PromptEntry(**item) for item in items]
        ids = [p.id for p in self.prompts]
        require(len(ids) > 0, "prompts.prompts", ids, "a prompt set needs at least one prompt")
        dup = sorted({i for i in ids if ids.count(i) > 1})
        require(not dup, "prompts.prompts", dup, "prompt ids must be unique")
        if self.select is not None:
            unknown = [i for i in self.select if i not in ids]
            require(not unknown, "prompts.select", unknown, f"allowed ids: {', '.join(ids)}")

    def selected(self) -> list[PromptEntry]:
        if self.select is None:
            return list(self.prompts)
        return [p for p in self.prompts if p.id in self.select]


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb (bench/loggers.py)
    project: str = "forcebench"
    entity: str | None = None
    mode: str = "offline"  # offline | online | disabled; the WANDB_MODE environment variable wins
    group: str | None = None  # default: the name of out_dir (one group per sweep)
    dir: str | None = None  # where W&B writes its files; default: out_dir

    def __post_init__(self) -> None:
        require(self.name in LOGGERS, "logger.name", self.name, f"allowed: {', '.join(LOGGERS.names())}")
        require(self.mode in WANDB_MODES, "logger.mode", self.mode, f"allowed: {', '.join(WANDB_MODES)}")


@dataclass
class RunConfig:
    model: Any = MISSING
    method: Any = MISSING
    prompts: PromptSetConfig = MISSING
    metrics: MetricsConfig = MISSING
    logger: LoggerConfig = MISSING
    durations: list[float] = field(default_factory=lambda: [5.0, 30.0])  # seconds
    seed: int = 0
    steps: int = 4
    sampler: str = "euler"
    device: str = "cpu"
    dtype: str = "float32"
    attention: str = "auto"  # auto | reference | triton (kernels/__init__.py)
    # ground-truth frames given as context before generation starts (toy world only); null:
    # the trained horizon minus one chunk (18 frames) on the toy world, fewer when the shortest
    # duration leaves no generated chunk after it; 0 on other backbones
    prefix_frames: int | None = None
    # whose frames the prefix shows: ground_truth (this seed's world) or other_seed (another seed of the
    # same prompt: a wrong context, for measuring whether the backbone uses its cache)
    prefix_source: str = "ground_truth"
    out_dir: str = "runs"
    force: bool = False  # rerun even if a finished run directory exists
    progress: bool = True

    def __post_init__(self) -> None:
        require(isinstance(self.model, ModelConfig), "model", type(self.model).__name__,
                f"choose a model option; allowed: {', '.join(MODELS.names())}")
        require(isinstance(self.method, MethodConfig), "method", type(self.method).__name__,
                f"choose a method option; allowed: {', '.join(METHODS.names())}")
        durations = list(self.durations)
        require(len(durations) > 0, "durations", durations, "give at least one duration in seconds")
        for d in durations:
            require(d > 0, "durations", durations, "every duration must be > 0 seconds")
            require(math.isfinite(d) and d <= MAX_SECONDS, "durations", durations,
                    f"allowed: finite durations up to {MAX_SECONDS:g} seconds")
        require(len(set(durations)) == len(durations), "durations", durations, "allowed: each duration once")
        require(1 <= self.steps <= MAX_STEPS, "steps", self.steps, f"allowed: >= 1 and <= {MAX_STEPS}")
        require(str(self.out_dir).strip() != "", "out_dir", self.out_dir, "allowed: a directory path (empty given)")
        require(self.sampler in SAMPLERS, "sampler", self.sampler, f"allowed: {', '.join(SAMPLERS)}")
        require(self.dtype in DTYPES, "dtype", self.dtype, f"allowed: {', '.join(DTYPES)}")
        require(self.attention in kernels.BACKENDS, "attention", self.attention,
                f"allowed: {', '.join(kernels.BACKENDS)}")
        require(self.device == "cpu" or self.device.startswith("cuda"), "device", self.device,
                "allowed: cpu, cuda, cuda:N")
        require(self.prefix_frames is None or self.prefix_frames >= 0, "prefix_frames", self.prefix_frames,
                "allowed: >= 0 or null")
        require(self.prefix_source in PREFIX_SOURCES, "prefix_source", self.prefix_source,
                f"allowed: {', '.join(PREFIX_SOURCES)}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def geometry(self) -> Geometry:
        return self.model.geometry()

    def prefix(self) -> int:
        """Ground-truth prefix frames of this run (``prefix_frames`` resolved)."""
        if self.prefix_frames is not None:
            return self.prefix_frames
        g = self.geometry()
        if not self.renders_toy_world():
            return 0
        return max(0, min(g.horizon_frames, min(self.frames())) - g.frames_per_chunk)

    def renders_toy_world(self) -> bool:
        """The toy backbone at the toy world's frame size (tiny test configs are not)."""
        return self.model.name == "toy" and tuple(self.geometry().frame_shape) == WORLD_FRAME_SHAPE

    def frames(self) -> list[int]:
        """Frames per requested duration, rounded up to whole chunks."""
        g = self.geometry()
        return [g.frames_for_seconds(d) for d in self.durations]


METHOD_SELECTORS = ("all", "budgeted", "controls")


def own_tags(cls: type) -> tuple[str, ...]:
    """A method class's own ``tags`` (not inherited: a control built on a window is no headline method)."""
    return vars(cls).get("tags", ())


def select_methods(selector: str) -> str:
    """``${methods:SELECTOR}`` in a sweep preset: the registered method names it selects,
    comma-joined for a Hydra sweep. SELECTOR is one or more of, joined by ``+``: ``all``;
    ``budgeted`` (every method whose config has ``budget_frames``, so it runs at an equal KV
    budget); ``controls`` (``control_*``, methods/controls/); or a tag of ``CacheMethod.tags``.
    So a new bounded method joins the equal-budget and multi-prompt sweeps by being registered."""
    tags = {tag for entry in METHODS for tag in own_tags(entry.cls)}
    names: list[str] = []
    for part in selector.split("+"):
        part = part.strip()
        require(part in METHOD_SELECTORS or part in tags, "sweep methods selector", part,
                f"allowed: {', '.join([*METHOD_SELECTORS, *sorted(tags)])}, joined by '+'")
        for entry in METHODS:
            budgeted = "budget_frames" in {f.name for f in fields(entry.config)}
            if (part == "all" or (part == "budgeted" and budgeted) or (part == "controls" and entry.name.startswith(
                    CONTROL_PREFIX)) or part in own_tags(entry.cls)) and entry.name not in names:
                names.append(entry.name)
    return ",".join(names)


def register_schemas() -> None:
    """Put the run schema and every registered model/method dataclass into the ConfigStore, and
    the ``methods`` resolver of the sweep presets."""
    if not OmegaConf.has_resolver("methods"):
        OmegaConf.register_new_resolver("methods", select_methods)
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    for entry in MODELS:
        cs.store(group="schema/model", name=entry.name, node=entry.config)
    for entry in METHODS:
        cs.store(group="schema/method", name=entry.name, node=entry.config)


def unknown_keys(node: Any, path: str = "") -> None:
    """Refuse a key of a composed config that its schema dataclass does not have (one that a
    ``+key=value`` override added); config-group additions such as ``+ablation=...`` merge
    into fields that exist and pass."""
    if isinstance(node, ListConfig) and not node._is_missing() and not node._is_none():
        for i in range(len(node)):
            unknown_keys(node._get_node(i), f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig) or node._is_missing() or node._is_none():
        return
    schema = OmegaConf.get_type(node)
    names = [f.name for f in fields(schema)] if is_dataclass(schema) else None
    for key in node.keys():
        full = f"{path}.{key}" if path else str(key)
        if names is not None and key not in names:
            raise ConfigError(f"{full}: unknown key for {schema.__name__}; allowed keys: {', '.join(names)}")
        unknown_keys(node._get_node(key), full)


def to_run_config(cfg: DictConfig) -> RunConfig:
    """Composed DictConfig -> validated RunConfig (dataclass __post_init__ checks run here)."""
    unknown_keys(cfg)
    try:
        run = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        cause = err.__cause__ if isinstance(err.__cause__, ConfigError) else None
        if cause is not None:
            raise cause from None
        raise ConfigError(one_line(err)) from None
    if not isinstance(run, RunConfig):
        raise ConfigError("the composed config is not a RunConfig; does conf/config.yaml list run_schema?")
    return run


def validate(run: RunConfig, local: bool = True) -> None:
    """Checks that need the backbone's geometry (durations that do not fit, budgets) or the
    file system (out_dir, metric weights). With ``local=False`` (jobs that run on other
    machines) the device and the logger's credentials are left to the job."""
    writable_dir(run.out_dir, "out_dir")
    run.model.check_inputs(run.dtype, [p.timeline() for p in run.prompts.selected()])
    check_metrics(run.metrics)
    if local:
        check_logger(run.logger)
    frames = run.frames()
    g = run.geometry()
    prefix = run.prefix()
    if prefix:
        require(run.renders_toy_world(), "prefix_frames", prefix,
                f"a ground-truth prefix needs the toy backbone at the toy world's frame size {WORLD_FRAME_SHAPE}; "
                f"allowed with model={run.model.name!r}: 0 or null")
        limit = g.horizon_frames - g.frames_per_chunk
        require(prefix % g.frames_per_chunk == 0 and prefix <= limit, "prefix_frames", prefix,
                f"allowed: a multiple of {g.frames_per_chunk} up to {limit} (the trained horizon minus one chunk)")
        require(prefix < min(frames), "prefix_frames", prefix,
                f"allowed: fewer than the shortest duration's {min(frames)} frames, or 0")
    run.model.check()
    run.method.check(run.geometry(), max(frames))
    if local and run.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={run.device!r}: CUDA is not available here; allowed: cpu")
    if local:
        try:
            kernels.resolve(torch.device(run.device), None if run.attention == "auto" else run.attention)
        except ValueError as err:
            raise ConfigError(f"attention={run.attention!r} on device={run.device!r}: {err}") from None


def one_line(err: BaseException) -> str:
    """An OmegaConf / Hydra composition error as one line naming the key and what is allowed."""
    from hydra.errors import MissingConfigException

    if isinstance(err, MissingConfigException) and err.options is not None:
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        return f"{group}={option!r}: no such {group} option; allowed: {', '.join(err.options)}"
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    full_key = getattr(cause, "full_key", None)
    msg = str(getattr(cause, "msg", None) or cause).strip().splitlines()[0]
    object_type = getattr(cause, "object_type", None)
    if full_key and msg.startswith("Key ") and object_type is not None and is_dataclass(object_type):
        allowed = ", ".join(f.name for f in fields(object_type))
        return f"{full_key}: unknown key for {object_type.__name__}; allowed keys: {allowed}"
    return f"{full_key}: {msg}" if full_key else msg
