"""What MRL's validation scores with besides the training reward, and the line it prints.

Training pays ``[reward]`` (say ``default`` over a frozen copy of the warm start's embedding); the final
evaluation of ``rxmrl run`` scores with ``[eval]`` (``default`` over the sentence encoder). Validation plays
each stage's validation episodes once and scores the same answers with both: the training reward under
``reward`` and every ``[validation]`` preset under ``reward/<preset>``, so the numbers MRL reports while it
trains are the ones the final evaluation will show, and ``validation.select`` picks the best checkpoint by
any of them (or by ``fact_recall``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rxmrl.envs.batched import BatchedMrlEnv
from rxmrl.envs.scoring import build_reward
from rxmrl.model import ReactiveTransformer
from rxmrl.training.mrl.config import MrlRunConfig, StageConfig
from rxmrl.training.mrl.curriculum import StageData

EnvFactory = Callable[[StageConfig, StageData, Any], BatchedMrlEnv]


def validation_scorers(config: MrlRunConfig, stage: StageConfig, train: StageData, policy: ReactiveTransformer,
                       tokenizer, make_env: EnvFactory) -> dict[str, BatchedMrlEnv]:
    """One env per ``[validation]`` preset for ``stage`` (``make_env(stage, train, reward)``), each scoring
    with that preset over ``validation.similarity`` (``policy-embedding``: a frozen copy of ``policy``'s)."""
    settings = config.validation
    return {preset: make_env(stage, train, build_reward(preset, settings.similarity, tokenizer, policy=policy))
            for preset in settings.presets}


def training_reward_label(config: MrlRunConfig) -> str:
    """``training reward (<preset>, <similarity>)``: what the summary's ``reward`` is."""
    return f"training reward ({config.reward.preset}, {config.reward.similarity})"


def validation_line(summary: dict[str, float], config: MrlRunConfig) -> str:
    """Every validation number under its name: the training reward (mean, min, max), each preset, recall."""
    parts = [f"{training_reward_label(config)} {summary['reward']:.3f} (min {summary['reward_min']:.3f}, max "
             f"{summary['reward_max']:.3f})"]
    parts += [f"{preset} ({config.validation.similarity}) {summary[f'reward/{preset}']:.3f}"
              for preset in config.validation.presets]
    parts.append(f"fact recall {summary['fact_recall']:.3f}")
    return "validation: " + ", ".join(parts)
