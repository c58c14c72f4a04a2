"""The weights the enabled metrics need, checked before any work.

``metrics.weights_dir`` must be a folder when given (the metrics read it as given, relative
to the working directory). With ``metrics.strict=true`` every weights file an enabled metric
needs must be found there (or, without it, in $FORCEBENCH_WEIGHTS and the shipped folder),
so a strict run fails in the preflight instead of inside its first job.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError, require
from metrics.base import METRICS
from metrics.encoders.base import ENCODERS
from metrics.encoders.weights import EncoderUnavailable, find_weights
from metrics.suite import MetricsConfig


def check_metrics(cfg: MetricsConfig) -> None:
    """One-line ConfigError for a missing ``weights_dir`` or, in strict mode, a missing weights file."""
    if cfg.weights_dir is not None:
        folder = Path(cfg.weights_dir)
        require(str(cfg.weights_dir).strip() != "" and folder.is_dir(), "metrics.weights_dir", cfg.weights_dir,
                f"folder not found (looked at {folder.resolve()}); allowed: a folder holding weights files, or null")
    if not cfg.strict:
        return
    for name in cfg.enabled:
        entry = METRICS.get(name)
        config = cfg.metric_config(name)
        try:
            for encoder in entry.cls.needs(config):
                if getattr(ENCODERS.get(encoder).cls, "needs_weights", True):
                    find_weights(encoder, cfg.weights_dir)
            entry.cls.load_extra(config, cfg.weights_dir)
        except EncoderUnavailable as err:
            raise ConfigError(f"metrics.strict=true and metric {name!r} is unavailable: {err}") from None
