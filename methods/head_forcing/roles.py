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

from bench.errors import ConfigError
from bench.models.base import resolve_path

ROLES = ("local", "anchor", "memory")
TOY_ROLE_MAP = "results/head_roles/toy.json"  # `forcebench profile` of the toy backbone


@dataclass
class RoleThresholds:
    anchor_sink_mass: float = 0.2
    local_mass: float = 0.72
    local_frames: int = 3
    sink_frames: int = 3


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


def load_role_map(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


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
    return load_role_map(Path(__file__).resolve().parents[2] / TOY_ROLE_MAP)


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
    for key in ("local_mass", "sink_mass"):
        values = np.array(profile["stats"][key], dtype=float)
        mean = {r: float(values[source == r].mean()) for r in set(layer)}
        stats[key] = [[mean[r] for r in layer] for _ in range(layers)]
    return {"model": f"synthetic: role shares of {profile['model']}'s profile", "synthetic": True,
            "counts": counts(np.array([layer] * layers, dtype=object)), "roles": [layer] * layers, "stats": stats}
