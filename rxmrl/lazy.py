"""Lazy re-exports for package ``__init__`` modules.

``rxmrl.envs``, ``rxmrl.evaluation`` and ``rxmrl.baseline`` re-export names from submodules that import
torch, transformers or gymnasium. Loading those on first attribute access keeps ``import rxmrl`` and
``rxmrl --help`` fast while ``from rxmrl.envs import MrlEnv`` still works.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first use and caches it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
