"""The schema of a run's ``summary.json`` as the reports read it (typed, validated once).

bench/run.py writes ``summary.json`` last into a run directory (``summarise`` for a finished
run, ``record_failure`` for a failed one). ``RunSummary.from_json(obj)`` is the one
constructor: it checks everything a report reads and raises ``SummaryError`` (one line: why)
on anything else; bench/report/runs.py turns that into one warning line naming the file and
skips the run directory.

A finished run (status ``ok``)::

    {"status": "ok", "run": "<run directory name>", "model": "toy", "method": "sink",
     "method_params": {"name": "sink", ...}, "prompt_id": "city_stripes", "seed": 0,
     "durations": [{"seconds_requested": 5.0, "seconds": 5.25, "frames": 21, "chunks": 7,
                    "latency_mean_s": ..., "fps": ..., "kv_bytes": ..., ...,
                    "metrics": {"palette_fidelity": 0.91, "revisit_psnr_beyond": null, ...},
                    "scoring": {...}}, ...], ...}

A failed run: ``{"status": "failed: <why>", "message": ..., "run", "method", "prompt_id",
"seed"}`` with no durations. Fields run.py writes that no report reads (``frames_generated``,
``rounding``, ``metrics_version``, ``metrics_unavailable``, ``encoders``,
``timing``, a duration's ``scoring``) are not part of this schema.

Older key, read in this one place: a duration without ``seconds_requested`` takes its
``seconds`` as the requested duration (and as the generated one). run.py has always written
``seconds_requested``; hand-written summaries and early tools wrote only ``seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from core.system_numbers import SYSTEM_DIRECTIONS

IDENTITY_FIELDS = ("run", "method", "prompt_id", "seed")  # of every summary, finished or failed
FINISHED_FIELDS = (*IDENTITY_FIELDS, "durations")  # of a finished (status ok) run
# A duration's keys that are not system numbers (those are every other numeric key).
DURATION_KEYS = ("seconds_requested", "seconds", "frames", "chunks", "metrics", "scoring")
class SummaryError(ValueError):
    """A JSON value that is not a run summary; the message says why, in one line."""


def is_number(value: object) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: object) -> str:
    return repr(value)[:80]


@dataclass(frozen=True)
class DurationResult:
    """One requested duration of a finished run: what was generated for it, the system
    numbers of that prefix (latency, fps, KV bytes, tokens kept, peak memory: every numeric
    key run.py writes beside these fields) and the whole-prefix metric values (None: the
    metric is undefined for this video, e.g. no revisit beyond the window)."""

    seconds_requested: float
    seconds_generated: float | None = None  # whole chunks: >= seconds_requested
    frames: int | None = None
    chunks: int | None = None
    system: Mapping[str, float] = field(default_factory=dict)
    metrics: Mapping[str, float | None] = field(default_factory=dict)

    def values(self) -> dict[str, float | None]:
        """frames and chunks (when recorded), the system numbers, then the metric values (a
        metric named like a system number wins): one flat row of this duration."""
        counts = {k: v for k, v in (("frames", self.frames), ("chunks", self.chunks)) if v is not None}
        return {**counts, **self.system, **self.metrics}

    @classmethod
    def from_json(cls, d: object) -> DurationResult:
        """One element of a summary's ``durations``; SummaryError saying why when it is not one."""
        if not isinstance(d, dict):
            raise SummaryError(f"duration {_short(d)} is not an object")
        requested = d.get("seconds_requested", d.get("seconds"))  # the older key: see the module docstring
        if not is_number(requested):
            raise SummaryError(f"duration {_short(d)} lacks seconds_requested")
        metrics = d.get("metrics", {})
        if not isinstance(metrics, dict):
            raise SummaryError(f"duration {_short(d)} has no metrics object")
        bad = [k for k, v in metrics.items() if v is not None and not is_number(v)]
        if bad:
            raise SummaryError(f"metric {bad[0]!r} has the non-number value {metrics[bad[0]]!r}")
        numbers = {k: d.get(k) for k in ("seconds", "frames", "chunks", *SYSTEM_DIRECTIONS)}
        bad = [k for k, v in numbers.items() if v is not None and not is_number(v)]
        if bad:
            raise SummaryError(f"duration value {bad[0]!r} has the non-number value {numbers[bad[0]]!r}")
        system = {k: v for k, v in d.items() if k not in DURATION_KEYS and is_number(v)}
        generated = d.get("seconds")
        return cls(seconds_requested=float(requested), seconds_generated=None if generated is None else float(generated),
                   frames=d.get("frames"), chunks=d.get("chunks"), system=MappingProxyType(system),
                   metrics=MappingProxyType(dict(metrics)))


@dataclass(frozen=True)
class RunSummary:
    """A run directory's summary.json: the run's identity (what the reports key on), its
    status and, when finished (status ``ok``), one DurationResult per requested duration in
    the order written (a failed run has none)."""

    status: str  # "ok", or "failed: <why>"
    run: str  # the run directory's name
    method: str  # the method's shown name
    prompt_id: str
    seed: int
    model: str | None = None  # None: not recorded (a failure record never names it)
    method_params: Mapping[str, Any] = field(default_factory=dict)
    message: str | None = None  # a failed run's error, one line
    durations: tuple[DurationResult, ...] = ()

    @property
    def ok(self) -> bool:
        """A finished run (only those have durations)."""
        return self.status == "ok"

    @property
    def key(self) -> tuple[str, str, int]:
        """(method, prompt_id, seed): the video, up to the method's parameters and the model."""
        return self.method, self.prompt_id, self.seed

    @classmethod
    def from_json(cls, obj: object) -> RunSummary:
        """The summary in ``obj`` (parsed JSON); SummaryError saying why when it is not one."""
        if not isinstance(obj, dict):
            raise SummaryError(f"a JSON {type(obj).__name__}, not an object")
        status = obj.get("status")
        if not isinstance(status, str):
            raise SummaryError("no status string")
        if "seed" in obj and not (isinstance(obj["seed"], int) and not isinstance(obj["seed"], bool)):
            raise SummaryError(f"seed {obj['seed']!r} is not an integer")
        ok = status == "ok"
        missing = [k for k in (FINISHED_FIELDS if ok else IDENTITY_FIELDS) if k not in obj]
        if missing:
            raise SummaryError(f"status {status!r} without {', '.join(missing)}")
        for key in ("run", "method", "prompt_id", "model", "message"):  # the last two may be absent or null
            if key in obj and not isinstance(obj[key], str) and (key in IDENTITY_FIELDS or obj[key] is not None):
                raise SummaryError(f"{key} {_short(obj[key])} is not a string")
        params = obj.get("method_params", {})
        if not isinstance(params, dict):
            raise SummaryError(f"method_params {_short(params)} is not an object")
        durations = ()
        if ok:
            if not isinstance(obj["durations"], list) or not obj["durations"]:
                raise SummaryError("durations is not a non-empty list")
            durations = tuple(DurationResult.from_json(d) for d in obj["durations"])
        return cls(status=status, run=obj["run"], method=obj["method"], prompt_id=obj["prompt_id"], seed=obj["seed"],
                   model=obj.get("model"), method_params=MappingProxyType(dict(params)), message=obj.get("message"),
                   durations=durations)
