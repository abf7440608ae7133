"""Gymnasium multi-turn memory environments built from the MRL curriculum (installed as ``rxmrl.envs``).

    from rxmrl.envs import MrlEnv, BatchedMrlEnv, OracleAgent, RandomAgent
    env = MrlEnv(steps=4, split="validation", mode="text")          # or gymnasium.make("rxmrl/TinyStoriesMRL-v0")

``MrlEnv`` plays one episode through the Gymnasium API (text or token-id actions); ``BatchedMrlEnv`` steps B
episodes at once on padded id tensors for the trainer, with the same rewards. The names load lazily, so
``import rxmrl`` (which registers the gym ids) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rxmrl.lazy import lazy_getattr

_EXPORTS = {
    "MrlEnv": "rxmrl.envs.mrl_env", "MalformedActionError": "rxmrl.envs.rows",
    "validate_token_ids": "rxmrl.envs.mrl_env",
    "BatchedMrlEnv": "rxmrl.envs.batched", "BatchReset": "rxmrl.envs.batched", "BatchStep": "rxmrl.envs.batched",
    "GroupScores": "rxmrl.envs.batched",
    "PaddedIds": "rxmrl.envs.padded", "concat_padded": "rxmrl.envs.padded",
    "StepSpec": "rxmrl.envs.plan", "step_plan": "rxmrl.envs.plan",
    "EpisodeSampler": "rxmrl.envs.episodes", "DrawnEpisode": "rxmrl.envs.episodes",
    "build_reward": "rxmrl.envs.scoring", "token_similarity": "rxmrl.envs.scoring",
    "RewardScorer": "rxmrl.envs.scoring",
    "NaturalText": "rxmrl.envs.spaces", "token_ids_space": "rxmrl.envs.spaces",
    "Agent": "rxmrl.envs.agents", "OracleAgent": "rxmrl.envs.agents", "RandomAgent": "rxmrl.envs.agents",
    "RxTAgent": "rxmrl.envs.agents", "run_episode": "rxmrl.envs.agents",
    "register_envs": "rxmrl.envs.registration", "registered_ids": "rxmrl.envs.registration",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from rxmrl.envs.agents import Agent, OracleAgent, RandomAgent, RxTAgent, run_episode  # noqa: F401
    from rxmrl.envs.batched import BatchedMrlEnv, BatchReset, BatchStep, GroupScores  # noqa: F401
    from rxmrl.envs.mrl_env import MalformedActionError, MrlEnv, validate_token_ids  # noqa: F401
    from rxmrl.envs.padded import PaddedIds, concat_padded  # noqa: F401

__getattr__ = lazy_getattr(__name__, _EXPORTS)
