"""Gymnasium ids of the MRL environments, registered on ``import rxmrl`` (imports only gymnasium).

    rxmrl/TinyStoriesMRL-v0                    cumulative, 8 steps (``steps-8``)
    rxmrl/TinyStoriesMRL-LongRange-v0          long-range, 8 steps (``steps-8-lr``)
    rxmrl/TinyStoriesMRL-Mixed-v0              half cumulative, half long-range, 8 steps
    rxmrl/TinyStoriesMRL-Steps{N}-v0           cumulative, N in 1, 2, 4, 6, 8, 10, 12, 14, 16, 24, 32
    rxmrl/TinyStoriesMRL-LongRange-Steps{N}-v0 long-range, N in 2, 4, 6, 8, 10, 12, 14, 16, 24, 32

Any constructor argument of :class:`rxmrl.envs.MrlEnv` can be passed to ``gymnasium.make`` (``mode="token"``,
``source=...``, ``split="validation"``, ``similarity="random-embedding"``...).
"""

from __future__ import annotations

ENTRY_POINT = "rxmrl.envs.mrl_env:MrlEnv"
NAMESPACE = "rxmrl"
STEP_VARIANTS: tuple[int, ...] = (1, 2, 4, 6, 8, 10, 12, 14, 16, 24, 32)


def registered_ids() -> dict[str, dict]:
    """Every id this package registers, with its default keyword arguments."""
    ids = {
        f"{NAMESPACE}/TinyStoriesMRL-v0": dict(steps=8, strategy="cumulative"),
        f"{NAMESPACE}/TinyStoriesMRL-LongRange-v0": dict(steps=8, strategy="long_range"),
        f"{NAMESPACE}/TinyStoriesMRL-Mixed-v0": dict(steps=8, strategy="mixed", long_range_ratio=0.5),
    }
    for steps in STEP_VARIANTS:
        ids[f"{NAMESPACE}/TinyStoriesMRL-Steps{steps}-v0"] = dict(steps=steps, strategy="cumulative")
        if steps >= 2:
            ids[f"{NAMESPACE}/TinyStoriesMRL-LongRange-Steps{steps}-v0"] = dict(steps=steps, strategy="long_range")
    return ids


def register_envs() -> None:
    """Registers the ids above (idempotent: ids already registered are left alone)."""
    import gymnasium

    for env_id, kwargs in registered_ids().items():
        if env_id not in gymnasium.registry:
            gymnasium.register(id=env_id, entry_point=ENTRY_POINT, kwargs=kwargs)
