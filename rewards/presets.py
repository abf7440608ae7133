"""The one place a reward preset name (or config) becomes a reward object.

``default`` and ``rxnn-len`` (or a :class:`RewardConfig`) build :class:`MemoryRetentionReward`; ``rxlm`` (or
an :class:`RxlmRewardConfig`) builds :class:`RxlmReward`, the reference framework's reward reproduced
exactly. Both take the same call, so callers need not know which they hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rxmrl.rewards.retention import PRESETS, MemoryRetentionReward, RewardConfig
from rxmrl.rewards.rxlm import RxlmReward, RxlmRewardConfig
from rxmrl.rewards.similarity import SimilarityBackend


def preset_reward(
    preset: str | RewardConfig | RxlmRewardConfig = "default",
    similarity: SimilarityBackend | None = None,
    *,
    decode: Callable[[Sequence[int]], str] | None = None,
    tokenize: Callable[[str], Sequence[int]] | None = None,
) -> MemoryRetentionReward | RxlmReward:
    """The reward of a preset name in ``PRESETS`` or a config, over ``similarity`` (None: the sentence
    encoder, which needs ``decode`` for ids); ``tokenize`` (text -> ids) lets it score texts."""
    if isinstance(preset, str):
        check_preset(preset, "reward preset")
    if preset == "rxlm" or isinstance(preset, RxlmRewardConfig):
        return RxlmReward(preset, similarity, decode=decode, tokenize=tokenize)
    if not isinstance(preset, (str, RewardConfig)):
        raise TypeError(f"reward preset {preset!r}: expected a name in {PRESETS}, a RewardConfig or an "
                        "RxlmRewardConfig")
    return MemoryRetentionReward(preset, similarity, decode=decode, tokenize=tokenize)


def check_preset(name: str, where: str) -> None:
    """Refuse an unknown preset name where a config or command names it (before any work starts)."""
    if name not in PRESETS:
        raise ValueError(f"{where}={name!r} is not a reward preset; expected one of {list(PRESETS)}")
