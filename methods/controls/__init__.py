"""Negative controls: deliberately broken cache methods, registered as ``control_<name>``.

A benchmark must tell a broken cache method from a sound one. Each control breaks one thing
a sound method needs (what it keeps, where it places it in time, whether it keeps anything)
while the three bounded ones spend the same KV bytes as ``sliding_window`` at the same
``budget_frames`` / ``budget_tokens``. ``forcebench validate`` and the leaderboard check that
the reference methods beat every control on the primary score; a control that is not beaten
means the score (or the backbone) cannot see what the cache kept.

Every module in this package registers itself on import (``methods/__init__.py`` imports
this package like any other method module).
"""

from __future__ import annotations

import importlib
import pkgutil

CONTROL_PREFIX = "control_"

for _info in pkgutil.iter_modules(__path__):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
