"""Agents named on the command line: ``oracle``, ``random``, or a Reactive Transformer checkpoint folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rxmrl.data import Episode, default_tokenizer
from rxmrl.envs.agents import Agent, OracleAgent, RandomAgent, RxTAgent
from rxmrl.model.sampling import SamplingConfig
from rxmrl.tokenizer import RxTokenizer

AGENT_NAMES: tuple[str, ...] = ("oracle", "random")


def load_tokenizer_for(path: str | Path | None) -> RxTokenizer:
    """The tokenizer saved beside a checkpoint (``tokenizer.json`` in it or its parent), else the default."""
    if path is not None:
        for folder in (Path(path), Path(path).parent):
            if (folder / "tokenizer.json").is_file():
                return RxTokenizer.load(folder)
    return default_tokenizer()


def check_agent_exists(spec: str, role: str = "agent") -> None:
    from rxmrl.runtime import MissingInput

    if spec not in AGENT_NAMES and not Path(spec).exists():
        raise MissingInput(f"{role} {spec!r}: expected 'oracle', 'random' or a checkpoint folder with config.json "
                           "and model.safetensors")


def check_agents(specs: Sequence[str], role: str = "agent") -> None:
    """Every agent named on the command line checked before any episode is played (a broken last model of
    ``--compare`` is refused before the first one is evaluated)."""
    from rxmrl.model.rxt import check_folder

    for spec in specs:
        check_agent_exists(spec, role)
        if spec not in AGENT_NAMES:
            check_folder(spec, role)


def load_agent(spec: str, episodes: Sequence[Episode] = (), *, tokenizer: RxTokenizer | None = None,
               seed: int = 0, max_new_tokens: int = 64, device: str = "cpu",
               sampling: SamplingConfig | None = None) -> Agent:
    """``oracle``, ``random`` (draws answers of other ``episodes``), a folder saved by
    ``ReactiveTransformer.save_pretrained`` (``config.json`` + ``model.safetensors``), or a stateless
    baseline folder from ``rxmrl baseline train`` (a Hugging Face ``config.json`` with ``model_type``).
    A model answers greedily unless ``sampling`` says otherwise (oracle and random do not sample)."""
    tokenizer = tokenizer or load_tokenizer_for(None if spec in AGENT_NAMES else spec)
    if spec == "oracle":
        return OracleAgent(tokenizer)
    if spec == "random":
        return RandomAgent(list(episodes), seed=seed, tokenizer=tokenizer)
    from rxmrl.model.folder import ModelFolderError, inspect_folder
    from rxmrl.model.rxt import load_rxt

    check_agent_exists(spec)
    folder = inspect_folder(spec, "agent")
    if folder.kind == "baseline":  # a Hugging Face causal LM from `rxmrl baseline train`
        from rxmrl.baseline.agent import load_stateless_agent

        return load_stateless_agent(folder.path, device, max_new_tokens=max_new_tokens, seed=seed, sampling=sampling)
    model = load_rxt(folder.path, device, role="agent")
    if model.config.vocab_size < tokenizer.vocab_size:
        raise ModelFolderError(f"checkpoint {spec} has vocab_size {model.config.vocab_size} but its tokenizer has "
                               f"{tokenizer.vocab_size} tokens")
    return RxTAgent(model, tokenizer, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)
