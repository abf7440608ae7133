"""``--set`` overrides that shrink any pipeline config to a run of seconds (tiny model, few steps, few episodes)."""

from __future__ import annotations

TINY_MODEL = {"dim": 32, "num_layers": 1, "num_heads": 2, "query_heads": 1, "kv_heads": 1, "num_experts": 2,
              "experts_per_token": 1, "expert_dim": 32, "encoder_ff_dim": 32, "stm_slots": 8}


def tiny_overrides(run_dir, mrl_stages: int = 3) -> list[str]:
    """Tiny model of the config's own preset, 2 steps per supervised stage, 4 episodes per MRL stage,
    a nano-sized baseline, offline data."""
    sets = [f"run_dir={run_dir}", "torch_threads=1", "supervised.data.source=embedded", "mrl.data_source=embedded",
            "baseline.data.source=embedded", "eval.source=embedded", "eval.device=cpu",
            "supervised.data.num_validation_episodes=4", "supervised.data.curriculum_steps=2"]
    sets += [f"supervised.model.overrides.{k}={v}" for k, v in TINY_MODEL.items()]
    for stage in (1, 2, 3, 4):
        sets += [f"supervised.stage{stage}.loop.max_steps=2", f"supervised.stage{stage}.loop.log_every=1",
                 f"supervised.stage{stage}.loop.tensorboard=false", f"supervised.stage{stage}.loop.progress=false",
                 f"supervised.stage{stage}.batch_size=4"]
    sets += ["supervised.stage1.num_examples=16", "supervised.stage2.num_examples=16", "supervised.stage1.max_length=32",
             "supervised.stage2.max_length=32", "supervised.stage3.num_episodes=8", "supervised.stage4.num_episodes=8",
             "supervised.stage4.probe_every=0", "supervised.stage4.unfreeze_memory_attention_at=0",
             "supervised.stage4.unfreeze_encoder_at=0"]
    for stage in range(mrl_stages):
        sets += [f"mrl.stages.{stage}.num_episodes=4", f"mrl.stages.{stage}.eval_episodes=4",
                 f"mrl.stages.{stage}.epochs=1"]
    sets += ["mrl.mrl.batch_episodes=4", "mrl.mrl.minibatch_size=8", "mrl.mrl.ppo_epochs=1",
             "mrl.mrl.max_answer_tokens=6", "mrl.mrl.critic.max_len=64", "mrl.mrl.max_interaction_len=64", "mrl.tensorboard=false",
             "mrl.progress=false", "mrl.checkpoint_every=1"]
    sets += ["baseline.model.preset=nano", "baseline.sft.max_steps=2", "baseline.sft.batch_size=4",
             "baseline.data.num_episodes=4", "baseline.data.eval_episodes=2", "baseline.data.steps=2",
             "baseline.model.max_length=128"]
    sets += ["eval.steps=2", "eval.num_episodes=4", "eval.batch_size=4", "eval.similarity=random-embedding",
             "eval.max_new_tokens=6", "latency.turns=3", "latency.repeats=1"]
    return sets


def as_set_arguments(overrides: list[str]) -> list[str]:
    return [argument for override in overrides for argument in ("--set", override)]
