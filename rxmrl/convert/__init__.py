"""Converters from the reference formats into our ``save_pretrained`` folders.

    converted = load_rxlm("ReactiveAI/RxT-Alpha-Supervised")    # a hub id (gated: log in) or a local folder
    converted.model, converted.tokenizer                         # ReactiveTransformer, RxTokenizer
    convert_rxlm(SRC, "models/rxt-alpha-supervised")             # config.json, model.safetensors, tokenizer.json,
                                                                 # conversion.json, README.md (model card)

The converted folder is an ordinary rxmrl model: ``rxmrl eval --agent DIR``, ``rxmrl train mrl --init DIR``,
``rxmrl demo --checkpoint DIR``. Its token ids are relabelled so that the special tokens sit at our fixed ids
(:mod:`rxmrl.convert.vocab`); ``conversion.json`` keeps the relabelling and the source.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rxmrl.convert.errors import ConversionError

if TYPE_CHECKING:
    from rxmrl.convert.vocab import VocabMapping

CONVERSION_FILE = "conversion.json"
REFERENCE_FILES = ("config.json", "model.safetensors", "tokenizer.json")
# everything a converted folder holds (the model, its card, the tokenizer with its HF files, the provenance):
# a destination holding only these is an earlier conversion, replaced without asking
CONVERTED_FILES = ("README.md", "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
                   "tokenizer_config.json", CONVERSION_FILE)

__all__ = ["CONVERSION_FILE", "CONVERTED_FILES", "ConversionError", "Converted", "check_destination", "convert_rxlm",
           "load_rxlm", "load_rxlm_components", "save_converted"]


@dataclass
class Converted:
    """A converted model, its relabelled tokenizer, and how to map reference ids onto ours."""

    model: Any  # ReactiveTransformer (torch is imported lazily)
    tokenizer: Any  # RxTokenizer
    mapping: VocabMapping
    provenance: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    from rxmrl.model.folder import read_json

    if not path.is_file():
        raise ConversionError(f"{path} is missing")
    return read_json(path)  # non-UTF-8 or broken JSON: one line naming the file


def _weights(folder: Path) -> dict[str, Any]:
    """The reference folder's tensors, a truncated or foreign ``model.safetensors`` refused by name first."""
    from safetensors.torch import load_file

    from rxmrl.model.folder import read_safetensors_header

    read_safetensors_header(Path(folder) / "model.safetensors")
    return load_file(str(Path(folder) / "model.safetensors"))


@contextlib.contextmanager
def matching(folder: str | os.PathLike) -> Iterator[None]:
    """Weights that do not fit the model the reference config describes (a wrong shape, a missing tensor,
    an odd size) become one :class:`ConversionError` naming the folder, not a traceback from torch."""
    try:
        yield
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        if isinstance(error, ConversionError):
            raise
        detail = " ".join(str(error).split())[:200]
        raise ConversionError(f"{folder}: model.safetensors does not fit the model config.json describes "
                              f"({detail})") from error


def _tokenizer_json(source: str | os.PathLike | None, fallback: Path) -> tuple[dict[str, Any], str]:
    from rxmrl.hub import local_folder

    if source is None:
        path = fallback / "tokenizer.json"
    else:
        path = Path(source)
        if not path.is_file():
            path = local_folder(source, ["tokenizer.json"]) / "tokenizer.json"
    if not path.is_file():
        raise ConversionError(f"no tokenizer.json at {path}; pass the reference tokenizer (a file, folder or hub "
                              "id) with --tokenizer")
    return _read_json(path), str(source or path)


def _assemble(model_config: dict[str, Any], tensors: dict, tokenizer_json: dict[str, Any],
              provenance: dict[str, Any]) -> Converted:
    from tokenizers import Tokenizer

    from rxmrl.convert.rxlm_config import rxlm_to_config, tokenizer_roles
    from rxmrl.convert.rxlm_weights import retie, rxlm_state_dict
    from rxmrl.convert.vocab import mapping_for, pad_tokenizer, relabel_tokenizer, role_ids
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    try:
        tokenizer_json = pad_tokenizer(tokenizer_json, model_config["decoder_config"].get("vocab_size", 20000))
        roles = role_ids(tokenizer_json, tokenizer_roles(model_config))
    except ValueError as error:
        raise ConversionError(str(error)) from None
    mapping = mapping_for(tokenizer_json, roles)
    config = rxlm_to_config(model_config, mapping.new_size)
    tensors = dict(tensors)
    with matching(provenance["source"]):
        reconstructed = retie(tensors)  # a save made after share_components
        model = ReactiveTransformer(config)
        state = rxlm_state_dict(tensors, config, mapping, model.state_dict())
        model.load_state_dict(state, strict=True)
    tokenizer = RxTokenizer(Tokenizer.from_str(relabel_tokenizer(tokenizer_json, mapping, roles)))
    provenance = {**provenance, "format": "rxlm-RxTAlpha", "roles": roles, "added_tokens": mapping.added,
                  "relabel": mapping.relabel, "reconstructed": reconstructed}
    return Converted(model.eval(), tokenizer, mapping, provenance)


def load_rxlm(source: str | os.PathLike, tokenizer: str | os.PathLike | None = None) -> Converted:
    """Convert an RxLM ``RxTAlpha`` checkpoint (``save_pretrained`` folder or hub id) and its tokenizer."""
    from rxmrl.hub import local_folder

    folder = local_folder(source, REFERENCE_FILES)
    model_config = _read_json(folder / "config.json")
    if "decoder_config" not in model_config:
        raise ConversionError(f"{folder}/config.json is not an RxTAlpha config (no decoder_config); for separate "
                              "decoder / encoder / memory-attention folders use load_rxlm_components")
    tokenizer_json, tokenizer_source = _tokenizer_json(tokenizer, folder)
    tensors = _weights(folder)
    return _assemble(model_config, tensors, tokenizer_json, {"source": str(source), "tokenizer": tokenizer_source})


def load_rxlm_components(decoder: str | os.PathLike, encoder: str | os.PathLike,
                         memory_attention: str | os.PathLike, tokenizer: str | os.PathLike,
                         tokenizer_config: dict[str, int] | None = None) -> Converted:
    """Convert separate ``RxTDecoder`` / ``RxTEncoder`` / ``RxTSelfInterlayerMemoryAttention`` folders."""
    from rxmrl.hub import local_folder

    parts = {"decoder": decoder, "encoder": encoder, "memory_attention": memory_attention}
    configs, tensors = {}, {}
    for name, source in parts.items():
        folder = local_folder(source, REFERENCE_FILES[:2])
        configs[f"{name}_config"] = _read_json(folder / "config.json")
        tensors.update({f"{name}.{k}": v for k, v in _weights(folder).items()})
    if not any(k.startswith("memory_attention.model.interlayer_gate_layers.") for k in tensors):
        raise ConversionError(f"{memory_attention}: not a self-interlayer memory attention (no interlayer gates); "
                              "only RxTSelfInterlayerMemoryAttention is supported")
    tokenizer_json, tokenizer_source = _tokenizer_json(tokenizer, Path(str(tokenizer)))
    model_config = {**configs, "tokenizer_config": tokenizer_config or {},
                    "memory_attention_variant": "self-interlayer"}
    return _assemble(model_config, tensors, tokenizer_json,
                     {"source": {k: str(v) for k, v in parts.items()}, "tokenizer": tokenizer_source})


def check_destination(destination: str | os.PathLike, replace: bool = False) -> None:
    """Refuse, before any work, a destination whose replacement would delete files the converter did not
    write: a file, or a folder holding anything but a converted model's files (``replace``: the folder goes,
    whatever it holds). Absent and empty folders are fine."""
    from rxmrl.runtime import check_replaceable

    if replace and Path(destination).is_dir() and not Path(destination).is_symlink():
        return
    check_replaceable(destination, CONVERTED_FILES, "--replace")


def save_converted(converted: Converted, destination: str | os.PathLike, replace: bool = False) -> Path:
    """Write the converted model folder atomically (:func:`rxmrl.runtime.atomic_directory`), after
    :func:`check_destination`."""
    from rxmrl.runtime import atomic_directory, write_text

    check_destination(destination, replace)
    with atomic_directory(destination) as temporary:
        converted.model.save_pretrained(temporary, provenance={"converted_from": converted.provenance["source"]})
        converted.tokenizer.save(temporary)
        write_text(temporary / CONVERSION_FILE, json.dumps(converted.provenance, indent=1) + "\n")
    return Path(destination)


def convert_rxlm(source: str | os.PathLike, destination: str | os.PathLike,
                 tokenizer: str | os.PathLike | None = None, replace: bool = False) -> Path:
    """``load_rxlm`` + ``save_converted``: the folder that ``rxmrl eval`` / ``train mrl --init`` read."""
    check_destination(destination, replace)
    return save_converted(load_rxlm(source, tokenizer), destination, replace)
