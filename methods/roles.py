"""Head roles from profiling statistics: anchor, local or memory.

Rule (thresholds configurable, chosen on the training split's profile):
  anchor  if the head's attention mass on the first ``sink_frames`` frames (measured on
          chunks far from the start) is at least ``anchor_sink_mass``;
  local   else if its mass within the last ``local_frames`` frames (own chunk included)
          is at least ``local_mass``;
  memory  otherwise (it reads far back without fixating on the start).

The toy defaults were chosen on the training split: 0.2 and 0.72 sit in the widest gaps
of the profiled distributions (sink mass 0.19 | 0.22, local mass 0.709 | 0.734), so that
profiling noise (std <= 0.03 per head over 64 calibration rollouts) rarely flips a head.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ConfigError, require
from core.paths import REPO_DIR, read_text, resolve_path

ROLES = ("local", "anchor", "memory")
TOY_ROLE_MAP = "results/head_roles/toy.json"  # `forcebench profile` of the toy backbone


@dataclass
class RoleThresholds:
    anchor_sink_mass: float = 0.2
    local_mass: float = 0.72
    local_frames: int = 3
    sink_frames: int = 3

    def __post_init__(self) -> None:
        for key in ("anchor_sink_mass", "local_mass"):
            require(0 <= getattr(self, key) <= 1, f"--{key.replace('_', '-')}", getattr(self, key), "allowed: 0 to 1")
        for key in ("local_frames", "sink_frames"):
            require(getattr(self, key) >= 0, f"--{key.replace('_', '-')}", getattr(self, key), "allowed: >= 0")


def local_mass(mass_by_distance: np.ndarray, local_frames: int) -> np.ndarray:
    """[L, H, D] normalised mass by distance (0 = own chunk start) -> [L, H] mass at d <= local_frames."""
    return mass_by_distance[..., : local_frames + 1].sum(-1)


def classify(sink_mass: np.ndarray, mass_by_distance: np.ndarray, t: RoleThresholds) -> np.ndarray:
    """[L, H] array of role names."""
    local = local_mass(mass_by_distance, t.local_frames)
    roles = np.full(sink_mass.shape, "memory", dtype=object)
    roles[local >= t.local_mass] = "local"
    roles[sink_mass >= t.anchor_sink_mass] = "anchor"
    return roles


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of heads with the same role in two role maps."""
    return float((np.asarray(a) == np.asarray(b)).mean())


def counts(roles: np.ndarray) -> dict[str, int]:
    return {r: int((np.asarray(roles) == r).sum()) for r in ROLES}


def read_head_labels(path: str | Path, key: str, labels: tuple[str, ...], written_by: str) -> dict:
    """A head-label file (JSON object with ``roles``: a [layers][heads] list of names from
    ``labels``, and optionally ``stats``); binary, malformed or label-less files are one-line
    ConfigErrors naming ``key`` and, as what is allowed, a file ``written_by``."""
    try:
        data = json.loads(read_text(path, key))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{key}={str(path)!r}: not valid JSON ({err.msg} at line {err.lineno}); "
                          f"allowed: {written_by}") from None
    roles = data.get("roles") if isinstance(data, dict) else None
    ok = (isinstance(roles, list) and len(roles) > 0 and all(isinstance(layer, list) and layer for layer in roles)
          and len({len(layer) for layer in roles}) == 1 and all(r in labels for layer in roles for r in layer))
    if not ok:
        raise ConfigError(f"{key}={str(path)!r}: no valid \"roles\" entry (a list of layers, each a list of "
                          f"{', '.join(labels)} per head); allowed: {written_by}")
    return data


def load_role_map(path: str | Path, key: str = "method.role_map") -> dict:
    """Head Forcing's role map (local / anchor / memory per head, with ``stats``)."""
    return read_head_labels(path, key, ROLES, "a role map written by `forcebench profile`")


def role_map_stat(role_map: dict, name: str, path: str | Path, key: str = "method.role_map") -> np.ndarray:
    """``role_map["stats"][name]`` as a float array shaped like the roles, or a one-line ConfigError."""
    try:
        values = np.array((role_map.get("stats") or {})[name], dtype=float)
    except (KeyError, TypeError, ValueError):
        values = None
    if values is None or values.shape != np.array(role_map["roles"], dtype=object).shape:
        raise ConfigError(f"{key}={str(path)!r}: no stats.{name} of the roles' shape; allowed: a role map written "
                          "by `forcebench profile`")
    return values


def existing_role_map(path: str) -> Path:
    """The file of ``method.role_map=path`` (relative paths also from the repository root),
    or a one-line ConfigError saying how to make one."""
    file = resolve_path(path)
    if not file.is_file():
        raise ConfigError(f"method.role_map={path!r}: file not found (looked at {file.resolve()}); "
                          f"create it with `forcebench profile`")
    return file


def load_toy_profile() -> dict:
    """The toy backbone's profiled role map as shipped in the repository."""
    return load_role_map(REPO_DIR / TOY_ROLE_MAP)


def role_map_with_shares(profile: dict, layers: int, heads: int) -> dict:
    """A role map for a model that has no profile (random weights): every layer gets the
    source ``profile``'s role shares over its ``heads`` (local, then anchor, then memory
    heads) and, as statistics, the source's per-role means. For timing and memory only:
    which of a model's heads play which role is not measured by it."""
    total = sum(profile["counts"].values())
    n = {r: round(heads * profile["counts"][r] / total) for r in ("anchor", "memory")}
    n["local"] = max(0, heads - n["anchor"] - n["memory"])
    layer = [r for r in ROLES for _ in range(n[r])][:heads]
    source = np.array(profile["roles"], dtype=object)
    stats = {}
    for key in ("local_mass", "sink_mass", "mass_by_distance"):  # per-role means ([L, H] or [L, H, D])
        values = np.array(profile["stats"][key], dtype=float)
        mean = {r: values[source == r].mean(axis=0).tolist() for r in set(layer)}
        stats[key] = [[mean[r] for r in layer] for _ in range(layers)]
    return {"model": f"synthetic: role shares of {profile['model']}'s profile", "synthetic": True,
            "counts": counts(np.array([layer] * layers, dtype=object)), "roles": [layer] * layers, "stats": stats}
