"""Which leaf fields of a configuration tree a run reads: the check behind "every setting is live".

``FieldReads(config)`` maps every dataclass instance in the tree to its key path (list items as ``*``, so
``stages.*.steps`` stands for the field of every stage) and, while active, records each read of a field of
those instances. Reads by the configuration machinery itself (printing, saving, comparing, validating the
tree: :mod:`rxmrl.config` walks every field) do not count: a field only they touch is dead. A copy made
with ``dataclasses.replace`` (a pipeline resolving its sections) takes the place of its original: the copy's
reads count, the copying itself does not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from typing import Any

import rxmrl.config


def declared_leaves(cls: type, prefix: str = "") -> set[str]:
    """Key paths of the leaf fields of dataclass ``cls``: into nested dataclasses and lists of them."""
    leaves = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, annotation = f"{prefix}{f.name}", hints[f.name]
        item = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
        if dataclasses.is_dataclass(annotation):
            leaves |= declared_leaves(annotation, f"{path}.")
        elif item is not None and dataclasses.is_dataclass(item):
            leaves |= declared_leaves(item, f"{path}.*.")
        else:
            leaves.add(path)
    return leaves


class FieldReads:
    def __init__(self, config: Any) -> None:
        self.config, self.read = config, set()
        self.paths: dict[int, str] = {}
        self._walk(config, "")
        self._classes = {type(obj) for obj in self._instances}
        self._suspended = 0

    def _walk(self, node: Any, prefix: str) -> None:
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            self.paths[id(node)] = prefix
            self._instances = [*getattr(self, "_instances", []), node]  # kept alive: their ids stay theirs
            for f in dataclasses.fields(node):
                self._walk(object.__getattribute__(node, f.name), f"{prefix}{f.name}.")
        elif isinstance(node, list):
            for item in node:
                self._walk(item, f"{prefix}*.")

    def unread(self) -> list[str]:
        return sorted(declared_leaves(type(self.config)) - self.read)

    @contextlib.contextmanager
    def recording(self):
        """Record reads inside the block; :mod:`rxmrl.config`'s tree walks are not counted."""
        originals = {cls: cls.__dict__.get("__getattribute__") for cls in self._classes}
        names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in self._classes}
        reads = self

        def getattribute(obj, name):
            value = object.__getattribute__(obj, name)
            if not reads._suspended and name in names.get(type(obj), ()) and id(obj) in reads.paths:
                reads.read.add(reads.paths[id(obj)] + name)
            return value

        walkers = {name: getattr(rxmrl.config, name) for name in ("to_dict", "validate")}
        replace = dataclasses.replace

        def suspended(function):
            def call(*args, **kwargs):
                reads._suspended += 1
                try:
                    return function(*args, **kwargs)
                finally:
                    reads._suspended -= 1
            return call

        def tracked_replace(obj, /, **changes):
            copy = suspended(replace)(obj, **changes)
            if id(obj) in reads.paths:
                reads._walk(copy, reads.paths[id(obj)])
            return copy

        for cls in self._classes:
            cls.__getattribute__ = getattribute
        for name, function in walkers.items():
            setattr(rxmrl.config, name, suspended(function))
        dataclasses.replace = tracked_replace
        try:
            yield self
        finally:
            dataclasses.replace = replace
            for cls, original in originals.items():
                if original is None:
                    del cls.__getattribute__
                else:
                    cls.__getattribute__ = original
            for name, function in walkers.items():
                setattr(rxmrl.config, name, function)
