"""Full cache: keep every clean frame, at its absolute position.

The reference point of every comparison: attention sees everything, memory grows linearly
with duration, and past the trained horizon the model meets positions and context lengths
it never saw in training.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.geometry import Geometry
from methods.base import METHODS, CacheMethod, MethodConfig
from methods.bounded import check_absolute_fits


@dataclass
class FullConfig(MethodConfig):
    name: str = "full"

    def check(self, geometry: Geometry, max_frames: int) -> None:
        check_absolute_fits(geometry, max_frames, self.name)


@METHODS.register("full", config=FullConfig)
class Full(CacheMethod):
    """No eviction; absolute positions (the base class behaviour)."""
