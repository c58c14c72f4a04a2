"""KV-cache methods. Every module in this package registers itself on import.

Adding a method: one file here (a config dataclass + a CacheMethod subclass, registered
with ``@METHODS.register``) and one config file conf/method/<name>.yaml. A subpackage
(``head_forcing/``, ``controls/``) is imported the same way and registers its own modules
in its ``__init__``; negative controls go in ``controls/`` as ``control_<name>``.
"""

from __future__ import annotations

import importlib
import pkgutil

from methods.base import METHODS, CacheMethod, MethodConfig, build_method

_INFRA = {"base", "bounded", "scored"}

for _info in pkgutil.iter_modules(__path__):
    if _info.name not in _INFRA and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["METHODS", "CacheMethod", "MethodConfig", "build_method"]
