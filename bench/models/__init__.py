"""Backbones. Importing this package registers every backbone in ``MODELS``."""

from bench.models import toy, wan  # noqa: F401  (registers "toy" and "wan")
from bench.models.base import MODELS, Backbone, ModelConfig, build_backbone
from core.geometry import Geometry

__all__ = ["MODELS", "Backbone", "Geometry", "ModelConfig", "build_backbone"]
