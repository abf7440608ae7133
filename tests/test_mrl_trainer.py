"""The MRL trainer on a tiny model: rollouts, frozen components, exact resume, critic, a 2-stage curriculum."""

from __future__ import annotations

import math

import pytest
import torch

from rxmrl.config import load_config
from rxmrl.data import default_tokenizer
from rxmrl.envs.scoring import build_reward
from rxmrl.model import ReactiveTransformer, RxTConfig, SamplingConfig, interaction_ids
from rxmrl.special_tokens import ANSWER_ID
from rxmrl.training.mrl import (
    Critic, MrlRunConfig, MrlTrainer, StageConfig, collect_rollout, compute_advantages,
    explained_variance, load_stage_data, mrl_loss,
)
from rxmrl.training.mrl.plan import RolloutPlan
from rxmrl.training.mrl.rollout import answer_rows, rollout_env, stage_episodes
from rxmrl.training.mrl.trainer import component_of


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is faster, and the machine is shared
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def tiny_policy(vocab: int, seed: int = 0) -> ReactiveTransformer:
    torch.manual_seed(seed)
    return ReactiveTransformer(RxTConfig(vocab_size=vocab, dim=32, num_layers=2, num_heads=2, query_heads=2,
                                         kv_heads=2, num_experts=2, experts_per_token=1, expert_dim=32,
                                         encoder_ff_dim=48, stm_slots=8, memory_attention="simple"))


TINY = ["mrl.batch_episodes=3", "mrl.minibatch_size=4", "mrl.ppo_epochs=2", "mrl.max_answer_tokens=5",
        "tensorboard=false", "progress=false", "mrl.sampling.top_k=50", "mrl.sampling.temperature=0.9"]


def tiny_config(*extra: str, steps=(2,)) -> MrlRunConfig:
    overrides = list(TINY)
    cfg = load_config(MrlRunConfig, None, overrides)
    cfg.stages = [StageConfig(steps=s, num_episodes=4, eval_episodes=3) for s in steps]
    from rxmrl.config import apply_overrides
    return apply_overrides(cfg, list(extra))


def env_for(data, steps: int, policy, tokenizer, max_answer_tokens: int = 6):
    """The trainer's env for ``data`` (its reward, the tiny config's) and the episodes it plays."""
    episodes = stage_episodes(data.episodes, data.long_range, steps)
    reward = build_reward("default", "policy-embedding", tokenizer, policy=policy)
    return rollout_env(episodes, steps, reward, tokenizer, max_answer_tokens=max_answer_tokens), episodes


def test_rollout_records_log_probs_under_the_sampling_distribution_and_writes_without_doubled_answer_token(
        tokenizer):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 3)
    env, episodes = env_for(data, 2, policy, tokenizer)
    sampling = SamplingConfig(temperature=0.7, top_k=20)
    reference = tiny_policy(tokenizer.vocab_size)
    torch.manual_seed(1)
    rollout = collect_rollout(policy, env, episodes, RolloutPlan(sampling, max_answer_tokens=6), reference=reference,
                              critic=Critic(policy))
    assert rollout.size == 6 and rollout.rewards.shape == (6,) and rollout.values.shape == (6,)
    # Behaviour log-probs equal a teacher-forced re-score under the same processed distribution ...
    scored = policy.score(rollout.queries, rollout.answers, rollout.stm_read, answer_mask=rollout.mask,
                          sampling=sampling)
    assert torch.allclose(scored.log_probs, rollout.old_log_probs, atol=1e-4)
    # ... and not under the plain softmax (the reference framework's pitfall).
    plain = policy.score(rollout.queries, rollout.answers, rollout.stm_read, answer_mask=rollout.mask)
    assert not torch.allclose(plain.log_probs, rollout.old_log_probs, atol=1e-2)
    # The reference policy (same weights) with its own, identically reset and written STM agrees too.
    assert torch.allclose(rollout.ref_log_probs, rollout.old_log_probs, atol=1e-4)
    # Step 1 wrote (query 0, own answer 0): one [A], exactly the ids interaction_ids builds.
    for b in range(3):
        written = rollout.write_ids[3 + b][rollout.write_mask[3 + b]].tolist()
        own = rollout.answers[b][rollout.mask[b]].tolist()
        assert written == interaction_ids(rollout.queries[b], own)
        assert written.count(ANSWER_ID) == 1
    # STM after the write is what the answer read; the first write starts from a fresh (small) STM.
    assert rollout.stm_prev[:3].abs().max() < 0.2
    assert torch.equal(rollout.stm_prev[3:], rollout.stm_read[:3])


def test_reference_stm_is_reset_per_episode(tokenizer):
    """The same episodes twice in a row give the same reference log-probs (no memory leaking across)."""
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 2)
    env, episodes = env_for(data, 2, policy, tokenizer)
    reference = tiny_policy(tokenizer.vocab_size, seed=5).eval()
    outs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(0)
        outs.append(collect_rollout(policy, env, episodes, RolloutPlan(GREEDY_ROLLOUT, max_answer_tokens=4),
                                    reference=reference, generator=generator))
    assert torch.equal(outs[0].ref_log_probs, outs[1].ref_log_probs)


GREEDY_ROLLOUT = SamplingConfig(greedy=True)


def test_frozen_components_stay_bit_identical_and_the_last_smaller_batch_trains(tokenizer, tmp_path):
    cfg = tiny_config()
    policy = tiny_policy(tokenizer.vocab_size)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = MrlTrainer(cfg, policy, tokenizer, run_dir=tmp_path)
    steps_per_iteration = []
    original = trainer.iteration

    def counting(*args):
        start = trainer.step
        record = original(*args)
        steps_per_iteration.append(trainer.step - start)
        return record
    trainer.iteration = counting
    trainer.fit()
    # 4 episodes in batches of 3 -> 2 iterations: 6 samples -> 2 minibatches, 2 samples -> 1; x 2 PPO epochs
    assert steps_per_iteration == [4, 2]
    group_of = component_of(trainer.model)
    changed = {"memory_cross_attention": False, "memory_attention": False}
    for name, param in trainer.model.policy.named_parameters():
        group = group_of(f"policy.{name}")
        if group in changed:
            changed[group] |= not torch.equal(param, before[name])
        else:
            assert torch.equal(param, before[name]), f"frozen {group} parameter {name} changed"
    assert all(changed.values()), changed


def interrupted_and_resumed(cfg, tokenizer, tmp_path):
    """An uninterrupted run, and one interrupted in its second iteration then built again to resume.

    Returns ``(full, resumed)`` trainers (``resumed`` before its ``fit``: its position can be checked; call
    ``finish``)."""
    full = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path / "full")
    full.fit()
    interrupted = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path / "resumed")
    original, calls = interrupted.iteration, []

    def stop_on_second(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args)
    interrupted.iteration = stop_on_second
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path / "resumed")
    return full, resumed


def finish(full, resumed) -> None:
    """Run ``resumed`` to the end: it must end with ``full``'s weights, bit for bit."""
    resumed.fit()
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_resume_equals_an_uninterrupted_run(tokenizer, tmp_path):
    full, resumed = interrupted_and_resumed(tiny_config("stages.0.random_reset_ratio=0.5"), tokenizer, tmp_path)
    assert resumed.state.batch == 1 and resumed.step == 4
    finish(full, resumed)


def test_critic_explained_variance_rises_on_a_fixed_batch(tokenizer):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 8)
    env, episodes = env_for(data, 2, policy, tokenizer)
    torch.manual_seed(0)
    critic = Critic(policy, memory_aware=True)
    rollout = collect_rollout(policy, env, episodes, RolloutPlan(SamplingConfig(), max_answer_tokens=6), critic=critic)
    optimizer = torch.optim.Adam(critic.parameters(), lr=3e-3)
    _, returns = compute_advantages(rollout.rewards, torch.zeros_like(rollout.rewards), rollout.num_steps)
    values = lambda: critic(rollout.critic_ids, rollout.critic_mask, rollout.stm_read)  # noqa: E731
    with torch.no_grad():
        start = explained_variance(values(), returns)
    for _ in range(60):
        predicted = values()
        loss = 0.5 * (predicted - returns).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        end = explained_variance(values(), returns)
    assert end > start + 0.3 and end > 0.5, (start, end)


def test_two_stage_curriculum_runs_end_to_end(tokenizer, tmp_path):
    from rxmrl.training.metrics import read_metrics
    from rxmrl.tokenizer import RxTokenizer

    cfg = tiny_config("mrl.advantages.estimator=gae", "stages.1.strategy=long_range",
                      "stages.1.teacher_forcing=true", "stages.1.trainable=[\"decoder\", \"memory_attention\", "
                      "\"memory_cross_attention\", \"encoder\", \"critic\"]", steps=(2, 3))
    result = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path).fit()
    assert [(e["stage"], e["steps"]) for e in result.evaluations] == [(0, 2), (1, 3)]
    records = read_metrics(tmp_path / "metrics.jsonl")
    iterations = [r for r in records if "rollout/reward" in r]
    assert len(iterations) == 4 and all(0 <= r["rollout/reward"] <= 10 for r in iterations)
    for key in ("train/loss/policy", "train/loss/entropy", "train/loss/reference_kl", "train/loss/memory",
                "train/loss/stabilisation_kl", "train/loss/value", "train/policy/clip_fraction",
                "train/loss/total", "rollout/explained_variance", "memory/stm_change_step_0"):
        assert key in iterations[0], key
    assert not {"train/loss", "train/policy/approx_kl"} & set(iterations[0])  # each value under one name
    assert any("eval/stage1/reward" in r for r in records)
    for directory in ("final", "best-stage-0", "best-stage-1"):
        ReactiveTransformer.from_pretrained(tmp_path / directory)
        RxTokenizer.load(tmp_path / directory)


def test_train_mrl_command_runs_from_a_model_dir_and_writes_the_comparison(tokenizer, tmp_path):
    import json

    from rxmrl.cli import main

    init = tmp_path / "warm"
    tiny_policy(tokenizer.vocab_size).save_pretrained(init)
    tokenizer.save(init)
    args = ["train", "mrl", "--init", str(init), "--run-dir", str(tmp_path / "run")]
    for override in [*TINY, "stages.0.num_episodes=3", "stages.0.eval_episodes=3", "stages.1.num_episodes=3",
                     "stages.1.eval_episodes=3", "stages.1.steps=3", "mrl.ppo_epochs=1"]:
        args += ["--set", override]
    assert main(args) == 0
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert [row["steps"] for row in comparison["stages"]] == [2, 3]
    row = comparison["stages"][0]
    assert row["difference"]["ci95_low"] <= row["difference"]["mean"] <= row["difference"]["ci95_high"]
    assert set(row["fact_recall_difference"]) == {"mean", "ci95_low", "ci95_high"}
    assert main(["train", "mrl", "--set", "stages.0.trainable=[\"decoderr\"]", "--init", str(init)]) == 2


def test_paired_differences_leave_out_episodes_without_a_value_on_either_side():
    from rxmrl.training.mrl import bootstrap_mean_difference

    nan = float("nan")
    after, before = torch.tensor([1.0, nan, 0.5, 0.0]), torch.tensor([0.0, 0.2, nan, 0.5])
    mean, low, high = bootstrap_mean_difference(after, before)
    assert mean == pytest.approx(0.25)  # episodes 0 and 3: (1.0 + -0.5) / 2
    assert -0.5 <= low <= mean <= high <= 1.0 and low < high
    assert all(math.isnan(v) for v in bootstrap_mean_difference(torch.tensor([nan]), torch.tensor([1.0])))


def test_a_non_finite_reward_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tokenizer, tmp_path):
    from rxmrl.training.harness import NonFiniteLossError

    cfg = tiny_config()
    policy = tiny_policy(tokenizer.vocab_size)
    reward = build_reward("default", "policy-embedding", tokenizer, policy=policy)
    trainer = MrlTrainer(cfg, policy, tokenizer, reward=reward, run_dir=tmp_path)
    original, calls = reward.score_ids, []

    def poisoned(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append(1)
        if len(calls) > 2:  # the second rollout (its first step) returns NaN
            out.reward = out.reward.clone().fill_(float("nan"))
        return out
    reward.score_ids = poisoned
    with pytest.raises(NonFiniteLossError, match="non-finite reward.*step-00000004"):
        trainer.fit()
    assert (tmp_path / "checkpoints" / "step-00000004").is_dir()


def test_no_memory_ablation_keeps_the_fresh_stm(tokenizer):
    policy = tiny_policy(tokenizer.vocab_size).eval()
    data = load_stage_data(tiny_config().stages[0], "embedded", "train", 2)
    env, episodes = env_for(data, 2, policy, tokenizer, max_answer_tokens=3)
    rollout = collect_rollout(policy, env, episodes, RolloutPlan(GREEDY_ROLLOUT, max_answer_tokens=3, write_memory=False))
    assert torch.equal(rollout.stm_read, rollout.stm_prev) and rollout.stm_change().abs().max() == 0


def test_cached_encoder_outputs_give_the_same_stm_and_gradients_as_re_encoding(tokenizer, tmp_path):
    """With the encoder and embedding frozen the rollout keeps each write's encoded data and the update
    reuses it; memory attention still trains through it, exactly as when every pass re-encodes."""
    from rxmrl.training.mrl.update import minibatch

    cfg = tiny_config()  # default trainable: memory cross-attention, memory attention, critic
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    stage = cfg.stages[0]
    trainer._enter_stage(stage)
    assert trainer._recompute_memory and trainer._keep_encoded
    torch.manual_seed(3)
    rollout = trainer.collect(stage, trainer.stage_data[0][0], [0, 1, 2])
    assert rollout.encoded is not None and rollout.encoded.shape[:3] == (*rollout.write_ids.shape[:1],
                                                                        2, rollout.write_ids.shape[1])
    rollout.advantages, rollout.returns = compute_advantages(rollout.rewards, rollout.values, rollout.num_steps)
    batch = minibatch(rollout, torch.tensor([4, 0, 3, 1]))
    policy = trainer.model.policy
    trainer.model.train()
    outputs = []
    for encoded in (batch["encoded"], None):
        trainer.model.zero_grad(set_to_none=True)
        stm = trainer.learner.recompute_stm({**batch, "encoded": encoded})
        log_probs = policy.score(batch["queries"], batch["answers"], stm, answer_mask=batch["mask"],
                                 sampling=trainer.sampling, with_logits=False).log_probs
        log_probs[batch["mask"]].sum().backward()
        outputs.append((stm.detach(), [p.grad.clone() for p in policy.memory_attention.parameters()]))
    (cached, cached_grads), (fresh, fresh_grads) = outputs
    torch.testing.assert_close(cached, fresh, atol=1e-6, rtol=1e-5)
    assert any(g.abs().sum() > 0 for g in cached_grads)
    for a, b in zip(cached_grads, fresh_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    trainer.close()


def test_fact_weight_mixes_recall_into_the_rewards_the_advantages_come_from(tokenizer, tmp_path):
    policy = tiny_policy(tokenizer.vocab_size)
    plain = MrlTrainer(tiny_config(), policy, tokenizer, run_dir=tmp_path / "plain")
    paid = MrlTrainer(tiny_config("reward.fact_weight=0.5"), policy, tokenizer, run_dir=tmp_path / "paid")
    rollout = plain.collect(plain.config.stages[0], plain.stage_data[0][0], [0, 1, 2])
    recall = rollout.components["fact_recall"]
    assert plain.training_rewards(rollout) is rollout.rewards
    mixed = paid.training_rewards(rollout)
    known = ~torch.isnan(recall)
    assert known.any()
    assert torch.allclose(mixed[known], 0.5 * rollout.rewards[known] + 5.0 * recall[known])
    assert torch.equal(mixed[~known], rollout.rewards[~known])
    with pytest.raises(ValueError, match="fact_weight"):
        tiny_config("reward.fact_weight=2")


def test_nan_weights_met_by_the_sampler_stop_with_the_guards_message(tokenizer, tmp_path):
    from rxmrl.training.harness import NonFiniteLossError

    trainer = MrlTrainer(tiny_config(), tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    with torch.no_grad():
        for parameter in trainer.model.policy.decoder.parameters():
            parameter.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"non-finite sampling probabilities \(the policy's logits\) \(nan\) "
                                                 r"at step 1 .* Last finite checkpoint: none yet in "):
        trainer.fit()  # not torch's "probability tensor contains either inf, nan or element < 0"
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_resume_with_another_batch_of_episodes_is_refused(tokenizer, tmp_path):
    from rxmrl.config import ConfigError

    MrlTrainer(tiny_config(), tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path).fit()
    with pytest.raises(ConfigError, match=r"curriculum position was saved with another layout \(batch_episodes 3 "
                                          r"-> 2\): set it back to resume, or use a new run_dir"):
        MrlTrainer(tiny_config("mrl.batch_episodes=2"), tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)


def test_validation_scores_the_same_answers_with_each_preset_and_keeps_the_best_by_select(tokenizer, tmp_path,
                                                                                       capsys):
    from rxmrl.training.metrics import read_metrics

    cfg = tiny_config('validation.presets=["default", "memory"]', "validation.similarity=policy-embedding",
                      "validation.select=reward/memory")
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    summary = trainer.evaluate(0).summary()
    # the training reward is default over policy-embedding too: the same answers score the same
    assert summary["reward/default"] == pytest.approx(summary["reward"], abs=1e-6)
    assert summary["reward/memory"] != pytest.approx(summary["reward"])
    result = trainer.fit()
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("stage 0 (2 steps) epoch 0, "))
    assert ("validation: training reward (default, policy-embedding) " in line and ", default (policy-embedding) "
            in line and ", memory (policy-embedding) " in line and line.endswith(" (best by reward/memory)"))
    assert trainer.state.best[0] == result.evaluations[0]["reward/memory"]
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "eval/stage0/reward" in r]
    assert {"eval/stage0/reward/default", "eval/stage0/reward/memory"} <= set(records[0])


def test_a_validation_select_of_an_unnamed_preset_is_one_clear_line():
    from rxmrl.config import ConfigError

    with pytest.raises(ConfigError, match=r"^validation.select: validation.select='reward/memory': expected one of "
                                          r"\['reward', 'reward/default', 'fact_recall', 'held_fact_recall'\] "
                                          r"\(reward/<preset> needs "
                                          r"the preset in validation.presets\)$"):
        tiny_config('validation.presets=["default"]', "validation.select=reward/memory")
    with pytest.raises(ConfigError, match=r"^optim.group_lr: group_lr names unknown component\(s\) \['decodr'\]; "
                                          r"known: \['embedding', "):
        tiny_config("optim.group_lr={decodr = 1e-4}")


@pytest.mark.parametrize("override, moved", [
    ("loop.grad_clip=0.5", "'loop' is no longer a setting at the top level: MRL runs its own loop: grad_clip is in "
                           "[optim]"),
    ("schedule.warmup_steps=3", "'schedule' is no longer a setting at the top level: the schedule is "
                                "optim.warmup_steps and optim.min_lr_ratio"),
    ("mrl.critic.lr=1e-4", "'mrl.critic.lr' is no longer a setting in [mrl.critic]: the critic's learning rate is "
                           "optim.group_lr.critic"),
])
def test_an_old_mrl_config_is_told_where_each_key_went(override, moved):
    from rxmrl.config import ConfigError

    with pytest.raises(ConfigError) as error:
        load_config(MrlRunConfig, None, [override])
    assert str(error.value).startswith(moved)


def test_episode_samples_lay_whole_episodes_out_by_step_episode_and_member():
    from rxmrl.training.mrl.update import episode_samples

    index = episode_samples(torch.tensor([2, 0]), num_episodes=3, steps=2, group_size=2)
    # sample (t·B + b)·G + g: step 0 of episodes 2 and 0, then their step 1
    assert index.tolist() == [4, 5, 0, 1, 10, 11, 6, 7]
    every = episode_samples(torch.randperm(3), num_episodes=3, steps=4, group_size=2)
    assert sorted(every.tolist()) == list(range(24))


@pytest.mark.parametrize("group", [1, 2])
def test_the_episode_chain_rebuilds_the_rollouts_memory_and_its_gradient_reaches_earlier_writes(
        tokenizer, tmp_path, group):
    """``memory_backprop = "episode"``: with the rollout's weights the STM chain rebuilt from STM_0 is the one
    the answers were sampled from (every group member reading its step's STM), and the last answer's loss
    moves with the first write, which the one-write recompute cannot see."""
    from rxmrl.training.mrl.update import episode_samples, minibatch

    extra = ["mrl.memory_backprop=episode"] + (["mrl.group_size=2", "mrl.advantages.estimator=grpo"]
                                               if group == 2 else [])
    cfg = tiny_config(*extra, steps=(3,))
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    stage = cfg.stages[0]
    trainer._enter_stage(stage)
    torch.manual_seed(5)
    rollout = trainer.collect(stage, trainer.stage_data[0][0], [0, 1, 2])
    rollout.advantages = rollout.returns = torch.zeros_like(rollout.rewards)
    batch = minibatch(rollout, episode_samples(torch.tensor([1, 2]), 3, 3, group))
    with torch.no_grad():
        stm, prev = trainer.learner.recompute_stm_chain(batch, 3, group)
    torch.testing.assert_close(stm, batch["stm_read"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(prev, batch["stm_prev"], atol=1e-5, rtol=1e-4)

    encoded = batch["encoded"].clone().requires_grad_(True)
    stm, _ = trainer.learner.recompute_stm_chain({**batch, "encoded": encoded}, 3, group)
    stm[-1].sum().backward()  # STM_3 of the last episode: rows of step 0 are its first write
    first_write = encoded.grad[:2 * group].flatten(1).abs().sum(1)  # the rows' copy of it: member 0's
    assert first_write[group] > 0 and first_write[:group].sum() == 0  # its own episode's write, not the other's
    trainer.close()


def test_episode_minibatches_train_whole_episodes_with_the_scheduled_number_of_steps(tokenizer, tmp_path):
    cfg = tiny_config("mrl.memory_backprop=episode", "mrl.minibatch_size=3")
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    before = trainer.total_updates()
    result = trainer.fit()
    # 4 episodes of 2 steps, batches of 3 then 1; 3 samples hold 1 episode: 3 + 1 minibatches, x 2 PPO epochs
    # (samples in minibatches of 3 would take 2 + 1)
    assert before == trainer.step == 8 and result is not None


def test_episode_backprop_is_refused_for_dmpo():
    with pytest.raises(ValueError, match="memory_backprop='episode' is for algorithm='ppo'"):
        tiny_config("mrl.memory_backprop=episode", "mrl.algorithm=dmpo", "mrl.group_size=2").mrl.validate()


def test_ppo_memory_credit_scores_the_answers_from_a_blank_memory_and_weights_the_policy_term(tokenizer, tmp_path,
                                                                                              monkeypatch):
    import rxmrl.training.mrl.update as update_module

    seen = []
    real_loss = update_module.mrl_loss
    monkeypatch.setattr(update_module, "mrl_loss", lambda batch, cfg: seen.append(batch) or real_loss(batch, cfg))
    plain = MrlTrainer(tiny_config(), tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path / "plain")
    data, _ = plain.stage_data[0]
    assert plain.collect(plain.config.stages[0], data, [0, 1]).ref_blank_log_probs is None  # no extra pass
    plain.close()
    trainer = MrlTrainer(tiny_config("mrl.objective.memory_credit=2"), tiny_policy(tokenizer.vocab_size), tokenizer,
                         run_dir=tmp_path / "credit")
    stage = trainer.config.stages[0]
    rollout = trainer.collect(stage, data, [0, 1])
    assert rollout.ref_blank_log_probs is not None and rollout.ref_blank_log_probs.shape == rollout.ref_log_probs.shape
    trainer.iteration(stage, data, [0, 1])
    weights = [b.token_weights for b in seen]
    assert weights and all(w is not None and w.shape == b.mask.shape for w, b in zip(weights, seen))
    assert all(bool((w[b.mask] >= 1).all()) for w, b in zip(weights, seen))
    assert any(bool((w[b.mask] > 1).any()) for w, b in zip(weights, seen))  # some token memory made likelier
    trainer.close()
