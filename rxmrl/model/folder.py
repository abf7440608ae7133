"""What a model folder is, checked before anything is built from it: the one loader of model folders.

A model folder is what ``save_pretrained`` wrote: ``config.json``, ``model.safetensors`` and usually
``tokenizer.json`` (a supervised stage adds ``stage.json``). Two kinds share that layout:

    rxt        an RxT model: ``config.json`` holds :class:`~rxmrl.model.config.RxTConfig`'s fields
    baseline   the stateless Hugging Face causal LM of ``rxmrl baseline train``: ``config.json`` has a
               ``model_type``

Why check first: a loader that trusts the folder fails late and far from the cause. A Llama built from an
RxT ``config.json`` takes every Llama default (6.5 billion parameters) and is killed for memory; a truncated
``model.safetensors`` or a ``config.json`` of another width fails inside torch with a traceback. Here each
file is read once, cheaply, and a mismatch is one :class:`ModelFolderError` line naming the file:

    kind       ``config.json`` must be UTF-8 JSON of the kind asked for (and ``stage.json`` a late enough stage)
    weights    the safetensors header lists every tensor of the model the config describes (tied weights
               once), each of the shape that model expects, and the file is as long as the header says
    tokenizer  ``tokenizer.json`` loads, and has no token the model's embedding lacks

The shapes come from the model built on the ``meta`` device (no memory), so a dense or an MoE decoder, or
any later architecture field, is checked by what its config builds, never by a copy of its layout. The
checks that build that model (``checked_rxt_config``, ``load_rxt``, ``check_folder``) live beside
:class:`~rxmrl.model.rxt.ReactiveTransformer`, which loads through them, so this module stays below it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rxmrl.runtime import InputError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from rxmrl.tokenizer import RxTokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, STAGE_FILE = "config.json", "model.safetensors", "tokenizer.json", "stage.json"
Kind = Literal["rxt", "baseline"]
KIND_NAMES = {"rxt": "an RxT model folder (save_pretrained, a supervised stage, MRL's final/)",
              "baseline": "a stateless baseline folder (rxmrl baseline train)"}


class ModelFolderError(InputError, ValueError):
    """A model folder is not what its reader needs; the message names the folder or file and why."""


@dataclass(frozen=True)
class ModelFolder:
    """A model folder whose ``config.json`` has been read: its kind and, for a supervised stage, the stage."""

    path: Path
    kind: Kind
    config: dict[str, Any]
    stage: int | None  # stage.json's stage; None: not a supervised stage's folder

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_FILE


def inspect_folder(path: str | Path, role: str = "model folder") -> ModelFolder:
    """The folder's kind from its ``config.json`` (and stage from ``stage.json``), or one error line; ``role``
    names the input in it (e.g. ``"--init"``)."""
    from rxmrl.runtime import recover

    path = Path(path)
    recover(path)  # a folder a killed writer had moved aside
    if not path.exists():
        raise ModelFolderError(f"{role} {path}: no such folder")
    if not path.is_dir():
        raise ModelFolderError(f"{role} {path} is a file: expected a model folder with {CONFIG_FILE} and "
                               f"{WEIGHTS_FILE}")
    config = read_json(path / CONFIG_FILE, role)
    kind: Kind = "baseline" if "model_type" in config else "rxt"
    stage = read_json(path / STAGE_FILE, role).get("stage") if (path / STAGE_FILE).exists() else None
    return ModelFolder(path, kind, config, stage if isinstance(stage, int) else None)


def read_json(path: Path, role: str = "model folder") -> dict[str, Any]:
    """A JSON object from a file of a model folder, or one error line naming the file."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is missing"
        raise ModelFolderError(f"{role}: {path} {what}: expected a model folder written by rxmrl")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ModelFolderError(f"{path}: not UTF-8 text (byte {error.start})") from error
    except json.JSONDecodeError as error:
        raise ModelFolderError(f"{path}: invalid JSON ({error.msg} at line {error.lineno})") from error
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def require_kind(folder: ModelFolder, kind: Kind, role: str = "model folder") -> None:
    if folder.kind != kind:
        model_type = folder.config.get("model_type")
        found = f"a baseline folder (model_type {model_type!r})" if folder.kind == "baseline" else \
            f"an RxT model folder ({CONFIG_FILE} has no model_type)"
        raise ModelFolderError(f"{role} {folder.path} is {found}: expected {KIND_NAMES[kind]}")


def require_stage(folder: ModelFolder, minimum: int, role: str, needs: str) -> None:
    """Refuse a supervised stage's folder earlier than ``minimum`` (a folder without ``stage.json`` passes:
    MRL's final/, a conversion)."""
    if folder.stage is not None and folder.stage < minimum:
        raise ModelFolderError(f"{role} {folder.path} is a stage-{folder.stage} checkpoint ({STAGE_FILE}): {needs} "
                               f"needs stage {minimum} or later")


# ------------------------------------------------------------------------------------------ weights


def read_safetensors_header(path: Path) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` from a safetensors file's header, checking the file is as long as the
    header says (a truncated copy is refused here, not halfway through loading)."""
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "is missing"
        raise ModelFolderError(f"{path} {what}: expected the model's weights")
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else None
        if length is None or length > size - 8:
            raise ModelFolderError(f"{path}: truncated or not a safetensors file ({size} bytes)")
        raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
        tensors = {name: entry for name, entry in header.items() if name != "__metadata__"}
        end = max((entry["data_offsets"][1] for entry in tensors.values()), default=0)
        shapes = {name: tuple(int(n) for n in entry["shape"]) for name, entry in tensors.items()}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError, IndexError) as error:
        raise ModelFolderError(f"{path}: not a safetensors file (unreadable header)") from error
    if 8 + length + end > size:
        raise ModelFolderError(f"{path}: truncated ({size} bytes, the header describes {8 + length + end})")
    return shapes


def expected_shapes(build: Callable[[], nn.Module]) -> list[dict[str, tuple[int, ...]]]:
    """The tensors a model built by ``build`` holds, built on the meta device (no memory): one
    ``{name: shape}`` group per tensor, tied names (the shared embedding) in one group."""
    import torch

    with torch.device("meta"):
        model = build()
    groups: dict[int, dict[str, tuple[int, ...]]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), {})[name] = tuple(tensor.shape)
    return list(groups.values())


def check_weights(path: Path, groups: list[dict[str, tuple[int, ...]]]) -> None:
    """Every tensor group of the model present once or more in the file at its shape, and nothing else."""
    found = read_safetensors_header(path)
    known = {name: shape for group in groups for name, shape in group.items()}
    unexpected = sorted(set(found) - set(known))
    if unexpected:
        raise ModelFolderError(f"{path}: tensor {unexpected[0]!r} is not in the model {CONFIG_FILE} describes "
                               f"({len(unexpected)} unexpected): weights of another model")
    for group in groups:
        present = [name for name in group if name in found]
        if not present:
            raise ModelFolderError(f"{path}: tensor {next(iter(group))!r} is missing: weights of another model")
        wrong = next((name for name in present if found[name] != group[name]), None)
        if wrong is not None:
            raise ModelFolderError(f"{path}: tensor {wrong!r} has shape {list(found[wrong])}, the model "
                                   f"{CONFIG_FILE} describes needs {list(group[wrong])}")


# ------------------------------------------------------------------------------------------ loaders


def load_tokenizer(path: str | Path, vocab_size: int | None = None) -> RxTokenizer:
    """``tokenizer.json`` of a folder (or the file itself), refused in one line when it does not load or
    holds tokens beyond a model's ``vocab_size``."""
    from rxmrl.tokenizer import RxTokenizer

    tokenizer = RxTokenizer.load(path)
    file = Path(path) / TOKENIZER_FILE if Path(path).is_dir() else Path(path)
    if vocab_size is not None and tokenizer.vocab_size > vocab_size:
        raise ModelFolderError(f"{file} has {tokenizer.vocab_size} tokens, more than the model's vocab_size "
                               f"{vocab_size}: a tokenizer of another model")
    return tokenizer


def rxt_config(folder: ModelFolder):
    """The :class:`RxTConfig` of an RxT folder, an unknown or ill-typed field named with the file."""
    from rxmrl.model.config import RxTConfig

    try:
        return RxTConfig.from_dict(folder.config)
    except (TypeError, ValueError) as error:
        raise ModelFolderError(f"{folder.path / CONFIG_FILE}: {error}") from error


def folder_tokenizer(path: str | Path, vocab_size: int, default: Callable[[], RxTokenizer] | None = None
                     ) -> RxTokenizer:
    """The folder's own tokenizer, checked against ``vocab_size``; without one, ``default()`` (when given)."""
    if not (Path(path) / TOKENIZER_FILE).exists() and default is not None:
        return default()
    return load_tokenizer(path, vocab_size)
