"""Every setting is live: a tiny run reads every leaf field of its configuration (no dead knobs).

A field only the configuration machinery touches (printed, saved, compared, validated) counts as unread,
and the failure names it: delete it, or make the code read it.
"""

from __future__ import annotations

from field_reads import FieldReads, declared_leaves
from test_mrl_trainer import one_thread, tiny_config, tiny_policy  # noqa: F401 (one_thread: an autouse fixture)


def test_the_reads_recorder_finds_a_field_nothing_reads():
    from rxmrl.training.mrl.config import MrlRunConfig

    from rxmrl.config import format_config

    config = tiny_config(steps=(2, 3))
    reads = FieldReads(config)
    with reads.recording():
        format_config(config)  # the machinery walks every field: not a read
        _ = config.stages[1].epochs, config.mrl.sampling.top_k
    assert "stages.*.epochs" in reads.read and "mrl.sampling.top_k" in reads.read
    assert "mrl.eval_sampling.top_k" in reads.unread()  # the same class at another path stays apart
    assert set(reads.unread()) == declared_leaves(MrlRunConfig) - {"stages.*.epochs", "mrl.sampling.top_k"}


def one_iteration_reads(tokenizer, tmp_path, name: str, *extra: str) -> FieldReads:
    """The fields a one-iteration MRL run reads (``extra``: more overrides)."""
    from rxmrl.training.mrl.run import run_mrl

    warm = tmp_path / "warm"
    if not warm.exists():
        tiny_policy(tokenizer.vocab_size).save_pretrained(warm)
        tokenizer.save(warm)
    config = tiny_config(f"init={warm}", f"run_dir={tmp_path / name}", "mrl.ppo_epochs=1",
                         'validation.presets=["default"]', "validation.similarity=random-embedding",
                         "validation.select=reward/default", *extra, steps=(2,))
    config.stages[0].num_episodes = 3  # one batch of 3 episodes: one iteration
    reads = FieldReads(config)
    with reads.recording():
        run_mrl(config)
    return reads


def test_a_one_iteration_mrl_run_reads_every_field_of_its_config(tokenizer, tmp_path):
    ppo = one_iteration_reads(tokenizer, tmp_path, "ppo")
    dmpo = one_iteration_reads(tokenizer, tmp_path, "dmpo", "mrl.algorithm=dmpo", "mrl.group_size=2",
                               "mrl.dmpo.anchor_coef=0.1", "mrl.dmpo.memory_credit=1")
    assert [f for f in ppo.unread() if not f.startswith("mrl.dmpo.")] == [], "settings a PPO run never reads"
    assert [f for f in dmpo.unread() if f.startswith("mrl.dmpo.")] == [], "DMPO settings a DMPO run never reads"
