"""A tiny Reactive Transformer, tokenised data and quiet stage settings for the supervised-stage tests."""

from __future__ import annotations

from functools import lru_cache

import torch

from rxmrl.data import default_tokenizer, load_curriculum, load_interactions, load_stories
from rxmrl.model import ReactiveTransformer, get_preset
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.loop import LoopConfig
from rxmrl.training.optim import OptimConfig
from rxmrl.training.schedule import ScheduleConfig
from rxmrl.training.stages import episode_rows, interaction_rows, story_rows

TINY = {"dim": 32, "num_heads": 4, "query_heads": 2, "kv_heads": 2, "num_experts": 2, "experts_per_token": 1,
        "expert_dim": 48, "encoder_ff_dim": 48, "stm_slots": 8}


@lru_cache(maxsize=1)
def tokenizer() -> RxTokenizer:
    return default_tokenizer()


def tiny_model(seed: int = 0) -> ReactiveTransformer:
    torch.manual_seed(seed)
    return ReactiveTransformer(get_preset("nano", vocab_size=tokenizer().vocab_size, **TINY))


def quiet_loop(max_steps: int, **changes) -> dict:
    """Stage settings for tests: no progress bar, no TensorBoard, short warm-up."""
    return {"loop": LoopConfig(max_steps=max_steps, log_every=1, progress=False, tensorboard=False,
                               **changes.pop("loop", {})),
            "schedule": ScheduleConfig(warmup_steps=2, **changes.pop("schedule", {})),
            "optim": OptimConfig(lr=changes.pop("lr", 3e-3)), **changes}


def stories(n: int = 32, max_length: int = 48):
    return story_rows(tokenizer(), load_stories(num_stories=n), max_length)


def interactions(n: int = 32, max_length: int = 48, answer_only: bool = False):
    return interaction_rows(tokenizer(), load_interactions(num_interactions=n), max_length, answer_only)


def episodes(n: int = 8, steps: int = 2, split: str = "supervised", max_length: int = 48):
    return episode_rows(tokenizer(), load_curriculum(steps=steps, split=split, num_episodes=n).episodes, max_length)


def first_and_last(losses: list[float], k: int = 4) -> tuple[float, float]:
    return sum(losses[:k]) / k, sum(losses[-k:]) / k


def group_snapshot(model: ReactiveTransformer) -> dict[str, list[torch.Tensor]]:
    return {group: [p.detach().clone() for p in params] for group, params in model.parameter_groups().items()}


def changed(before: dict[str, list[torch.Tensor]], model: ReactiveTransformer) -> set[str]:
    """The groups with at least one parameter that is not bit-identical to ``before``."""
    now = model.parameter_groups()
    return {group for group, params in before.items()
            if any(not torch.equal(old, new) for old, new in zip(params, now[group]))}
