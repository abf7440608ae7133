"""Typed configuration: nested dataclasses loaded from TOML, overridden from the command line.

Every run is described by one tree of dataclasses (any tree: this module knows nothing about models or
stages). The same tree is

* loaded from TOML: ``load_config(RunConfig, "run.toml", ["model.dim=256"])``; a table may start from
  another file, ``include = "other.toml"`` (a path relative to the including file), whose keys its own
  override (tables merge key by key, anything else is replaced), so one experiment composes the configs
  of the single commands instead of copying them,
* overridden with ``--set a.b.c=value`` strings whose values are coerced by the field annotations,
* printed at the start of a run (``format_config``) and saved beside its checkpoints (``save_config``),
  so ``load_config(RunConfig, saved)`` rebuilds exactly the resolved configuration.

Why strict: a misspelt key silently falling back to its default is the most expensive config bug in ML,
because the run still trains. Unknown keys and ill-typed values raise ``ConfigError`` naming the key path,
the value and what was expected, with close matches suggested. A dataclass checks its own fields in
``__post_init__``; checks across fields (which must see every ``--set`` applied) go in a ``validate()``
method, which :func:`validate` runs over the whole tree once the config is loaded, before any work.

Limits are declared, not coded: a dataclass lists its bounded fields in a ``LIMITS`` class variable,
``{"learning_rate": "> 0", "warmup_steps": ">= 0", "trainable": "non-empty"}`` (the rules are the keys of
``LIMIT_RULES``; on a list, tuple or dict the rule holds for every item; ``None`` is left alone), and
:func:`validate` checks them with the rest. Whatever a class declares, no float anywhere in the tree may be
NaN or infinite: no setting means "unbounded" by ``inf`` (optional limits are ``"none"``). A
dataclass whose keys were renamed lists them in a ``MOVED`` class variable, so an old config is told where
each key went.

Type rules: ``int`` accepts integers (and integral floats such as ``1e4``), never booleans; ``float``
accepts ints and floats; ``bool`` accepts only booleans (``--set x=true``); ``str`` takes ``--set`` text
verbatim; ``Literal`` checks membership; ``list[T]``/``tuple[T, ...]``/``tuple[A, B]``/``dict[str, T]``
coerce each item; a nested dataclass takes a table. TOML has no null, so ``Optional`` fields write
``None`` as the string ``"none"`` and read ``"none"``/``"null"`` back as ``None``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rxmrl.runtime import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

T = TypeVar("T")
_NONE_STRINGS = ("none", "null")


class ConfigError(ValueError, InputError):
    """A configuration key or value is wrong; the message names the key path and what was expected.
    An :class:`~rxmrl.runtime.InputError`: the CLI prints it as one ``error:`` line and exits 2."""


# ----------------------------------------------------------------------------------------- loading


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build ``cls`` from a TOML file (or its defaults when ``path`` is None), then apply ``--set`` overrides."""
    data = read_toml(Path(path)) if path is not None else {}
    config = apply_overrides(from_dict(cls, data), overrides)
    validate(config)
    return config


INCLUDE = "include"


def read_toml(path: Path, including: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML file as a mapping, every ``include = "file.toml"`` of its tables resolved (see the module
    docstring); a missing, invalid or circular include is a ``ConfigError`` naming the file and the key."""
    where = f" (included by {str(including[-1])!r})" if including else ""
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder{where}: expected a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist{where}")
    if path.resolve() in including:
        chain = " -> ".join(str(p) for p in (*including, path.resolve()))
        raise ConfigError(f"config includes form a cycle: {chain}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}): expected a TOML file") from error
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from error
    return _resolve_includes(data, path, (*including, path.resolve()), "")


def _resolve_includes(table: dict[str, Any], path: Path, including: tuple[Path, ...], prefix: str) -> dict[str, Any]:
    table = {key: _resolve_includes(value, path, including, _join(prefix, key)) if isinstance(value, dict)
             else value for key, value in table.items()}
    if INCLUDE not in table:
        return table
    target = table.pop(INCLUDE)
    if not isinstance(target, str):
        raise ConfigError(f"{path}: {_join(prefix, INCLUDE)} = {target!r}: expected the path of a TOML file")
    return _merge(read_toml(path.parent / target, including), table)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: tables merge key by key, any other value replaces the base's."""
    merged = dict(base)
    for key, value in top.items():
        merged[key] = (_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict)
                       else value)
    return merged


def validate(config: Any, prefix: str = "") -> None:
    """Check the whole tree once, before any work: every float finite, every dataclass's ``LIMITS``, then
    its ``validate()`` method (its cross-field checks)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        for f in dataclasses.fields(config):
            value, key = getattr(config, f.name), _join(prefix, f.name)
            _check_finite(value, key)
            validate(value, key)
        _check_limits(config, prefix)
        check = getattr(config, "validate", None)
        if callable(check):
            try:
                check()
            except (TypeError, ValueError) as error:
                if isinstance(error, ConfigError):
                    raise
                raise ConfigError(f"{prefix}: {error}" if prefix else str(error)) from error
    elif isinstance(config, (list, tuple)):
        for index, item in enumerate(config):
            validate(item, f"{prefix}.{index}")


LIMIT_RULES: dict[str, typing.Callable[[Any], bool]] = {
    "> 0": lambda v: v > 0,
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    "in [0, 1]": lambda v: 0 <= v <= 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
    "in [0, 1)": lambda v: 0 <= v < 1,
    "non-empty": lambda v: len(v) > 0,
}


def _check_limits(config: Any, prefix: str) -> None:
    """The ``LIMITS`` a dataclass declares (see the module docstring), each refused with the key and value."""
    for name, rule in getattr(type(config), "LIMITS", {}).items():
        if rule not in LIMIT_RULES or name not in {f.name for f in dataclasses.fields(config)}:
            raise TypeError(f"{type(config).__name__}.LIMITS[{name!r}] = {rule!r}: expected a field and one of "
                            f"{list(LIMIT_RULES)}")
        value, key = getattr(config, name), _join(prefix, name)
        if rule == "non-empty":
            if value is not None and not LIMIT_RULES[rule](value):
                raise ConfigError(f"{key} = {_toml_value(to_dict(value))}: expected a non-empty list")
            continue
        for item_key, item in _items(value, key):
            if item is not None and not LIMIT_RULES[rule](item):
                raise ConfigError(f"{item_key} = {_toml_value(item)}: expected a number {rule}")


def _check_finite(value: Any, key: str) -> None:
    for item_key, item in _items(value, key):
        if isinstance(item, float) and not math.isfinite(item):
            raise ConfigError(f"{item_key} = {_toml_value(item)}: expected a finite number")


def _items(value: Any, key: str):
    """``(key, item)`` for each scalar of a field: the value itself, or the items of a list, tuple or dict
    (nested dataclasses are left to :func:`validate`)."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _items(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _items(item, f"{key}.{index}")
    elif not (dataclasses.is_dataclass(value) and not isinstance(value, type)):
        yield key, value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking every key and coercing every value."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a table for {cls.__name__}, "
                          f"got {type(data).__name__} {data!r}")
    hints = _field_types(cls)
    for key in data:
        if key not in hints:
            raise ConfigError(_unknown_key_message(prefix, key, hints, cls))
    kwargs = {key: _coerce(value, hints[key], _join(prefix, key)) for key, value in data.items()}
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{prefix or cls.__name__}: missing required key(s) "
                          + ", ".join(_join(prefix, name) for name in missing))
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:  # __post_init__ validation
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"{prefix or cls.__name__}: {error}") from error


def apply_overrides(config: T, overrides: Sequence[str]) -> T:
    """Return a copy of ``config`` with each ``"a.b.c=value"`` applied in order (list items: ``a.0.b``)."""
    for override in overrides:
        key_path, sep, raw = override.partition("=")
        key_path = key_path.strip()
        if not sep or not key_path:
            raise ConfigError(f"override {override!r} must look like key.path=value")
        config = _set_path(config, type(config), key_path.split("."), raw.strip(), "")
    return config


def _set_path(node: Any, annotation: Any, parts: list[str], raw: str, prefix: str) -> Any:
    """Replace the value at ``parts`` below ``node``; rebuilds every container on the way (immutably)."""
    if not parts:
        return _coerce(_parse_raw(raw, annotation), annotation, prefix)
    head, rest = parts[0], parts[1:]
    here = _join(prefix, head)
    annotation = _strip_optional(annotation)
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if node is None:  # Optional[Dataclass] left unset: start from its defaults
            node = from_dict(annotation, {}, prefix)
        hints = _field_types(annotation)
        if head not in hints:
            raise ConfigError(_unknown_key_message(prefix, head, hints, annotation))
        child = _set_path(getattr(node, head), hints[head], rest, raw, here)
        try:
            return dataclasses.replace(node, **{head: child})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{here}: {error}") from error
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and isinstance(node, (list, tuple)):
        if not head.isdigit() or int(head) >= len(node):
            raise ConfigError(f"{here}: {prefix} has {len(node)} item(s); use an index 0..{len(node) - 1}")
        index = int(head)
        item_type = args[0] if origin is list or (len(args) == 2 and args[1] is Ellipsis) else args[index]
        items = list(node)
        items[index] = _set_path(items[index], item_type, rest, raw, here)
        return type(node)(items)
    if origin is dict and isinstance(node, dict):
        updated = dict(node)
        updated[head] = _set_path(node.get(head), args[1] if args else Any, rest, raw, here)
        return updated
    raise ConfigError(f"{here}: {prefix} holds a value of type {_type_name(annotation)}, which has no sub-keys")


def _parse_raw(raw: str, annotation: Any) -> Any:
    """Turn ``--set`` text into a Python value: TOML syntax where it parses, plain text otherwise."""
    if _strip_optional(annotation) is str and not (raw[:1] in "\"'" and raw[-1:] == raw[:1] and len(raw) > 1):
        return raw
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Add ``--config FILE`` and repeatable ``--set key.path=value`` to a command's parser."""
    parser.add_argument("--config", type=Path, required=required, metavar="FILE", help="TOML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config field, e.g. --set model.dim=256 (repeatable)")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The config a command was asked for: ``--config`` (or the defaults) with every ``--set`` applied."""
    return load_config(cls, getattr(args, "config", None), getattr(args, "overrides", None) or ())


# --------------------------------------------------------------------------------------- coercion


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against ``annotation`` and convert it (e.g. list -> tuple, str -> Path)."""
    if annotation is Any or annotation is object:
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in _NONE_STRINGS)):
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise _bad_value(key, value, _type_name(annotation))
    if origin is typing.Literal:
        if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
            return value
        close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}: {value!r} is not one of {list(args)}{hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _bad_value(key, value, _type_name(annotation))
        if origin is list:
            return [_coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} items ({_type_name(annotation)}), got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _bad_value(key, value, _type_name(annotation))
        value_type = args[1] if args else Any
        return {str(k): _coerce(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        return from_dict(annotation, value, key)
    return _coerce_scalar(value, annotation, key)


def _coerce_scalar(value: Any, annotation: Any, key: str) -> Any:
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value.lower() in ("inf", "+inf", "-inf", "nan"):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        if isinstance(value, (str, Path)):
            return Path(value)
    elif isinstance(annotation, type) and isinstance(value, annotation):
        return value
    raise _bad_value(key, value, _type_name(annotation))


def _bad_value(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{key}: expected {expected}, got {type(value).__name__} {value!r}")


# ------------------------------------------------------------------------------------------ output


def to_dict(config: Any) -> Any:
    """Plain TOML-ready data: dataclasses -> dicts, tuples -> lists, Paths -> str, None -> "none"."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, Mapping):
        return {str(k): to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    if isinstance(config, Path):
        return str(config)
    if config is None:
        return "none"
    return config


def dump_toml(config: Any) -> str:
    """Serialise a dataclass tree (or dict) to TOML text that ``load_config`` reads back to an equal tree."""
    lines: list[str] = []
    _write_table(lines, "", to_dict(config), array_item=False)
    return "\n".join(lines).strip() + "\n"


def save_config(config: Any, path: str | Path) -> Path:
    """Write the resolved configuration as TOML (the run directory's ``config.toml``), atomically."""
    from rxmrl.runtime import write_text

    return write_text(path, dump_toml(config))


def changed_keys(saved: str | Path, config: Any) -> list[str]:
    """Key paths whose value differs between a saved ``config.toml`` and ``config`` (empty if none saved)."""
    return sorted(changed_values(saved, config))


def changed_values(saved: str | Path, config: Any) -> dict[str, tuple[Any, Any]]:
    """``{key path: (saved value, value in config)}`` where they differ (a key one side lacks: None there);
    empty if nothing is saved. An unreadable file differs in every key (named ``(all: ...)``)."""
    saved = Path(saved)
    if not saved.is_file():
        return {}
    try:
        before = dict(_flatten(tomllib.loads(saved.read_text(encoding="utf-8")), ""))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {f"(all: {saved} is unreadable)": (None, None)}
    after = dict(_flatten(to_dict(config), ""))
    return {k: (before.get(k), after.get(k)) for k in sorted(before.keys() | after.keys())
            if before.get(k) != after.get(k)}


def format_config(config: Any) -> str:
    """Aligned ``key.path = value`` lines, one per leaf: what every run prints when it starts."""
    leaves = list(_flatten(to_dict(config), ""))
    width = max((len(k) for k, _ in leaves), default=0)
    title = type(config).__name__
    return "\n".join([f"{title}:"] + [f"  {k.ljust(width)} = {_toml_value(v)}" for k, v in leaves])


def _flatten(data: Any, prefix: str):
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _flatten(value, _join(prefix, key))
    elif _is_table_array(data):
        for index, item in enumerate(data):
            yield from _flatten(item, f"{prefix}.{index}")
    else:
        yield prefix, data


def _write_table(lines: list[str], path: str, table: dict, array_item: bool) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict) and not _is_table_array(v)}
    if path:
        lines.append("")
        lines.append(f"[[{path}]]" if array_item else f"[{path}]")
    lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items())
    for key, value in table.items():
        if isinstance(value, dict):
            _write_table(lines, _join(path, _toml_key(key)), value, array_item=False)
        elif _is_table_array(value):
            for item in value:
                _write_table(lines, _join(path, _toml_key(key)), item, array_item=True)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write {type(value).__name__} {value!r} to TOML")


# ------------------------------------------------------------------------------------------ helpers


def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of the dataclass's init fields (works with ``from __future__ import annotations``)."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as error:  # string annotations naming classes local to a function
        raise ConfigError(f"cannot resolve the annotations of {cls.__qualname__} ({error}); define the "
                          "dataclasses of a config at module level") from error
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _strip_optional(annotation: Any) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _unknown_key_message(prefix: str, key: str, hints: Mapping[str, Any], cls: type | None = None) -> str:
    """Names the key, where it is not known and what is; a key the class lists in ``MOVED`` (a class variable,
    ``{old key: where it went}``) says where it went instead."""
    where = f"in [{prefix}]" if prefix else "at the top level"
    moved = getattr(cls, "MOVED", {}).get(key)
    if moved:
        return f"{_join(prefix, key)!r} is no longer a setting {where}: {moved}"
    close = difflib.get_close_matches(key, list(hints), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(_join(prefix, c)) for c in close)}?" if close else ""
    return f"unknown key {_join(prefix, key)!r} {where}.{hint} Valid keys: {', '.join(sorted(hints))}"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else str(key)
