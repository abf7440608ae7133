"""The memory term of the MRL objective and the long-range final question's recall in the MRL comparison."""

from __future__ import annotations

import math

import pytest
import torch

from rxmrl.pipeline.report import comparison_note, comparison_table
from rxmrl.training.mrl import MrlTrainer
from rxmrl.training.mrl.config import ObjectiveConfig
from rxmrl.training.mrl.evaluate import Evaluation
from rxmrl.training.mrl.objective import LossInputs, ReferenceLikelihood, memory_gain_loss, mrl_loss, trained_terms
from rxmrl.training.mrl.run import final_recall_intervals
from rxmrl.training.mrl.update import PpoSamples, episode_samples
from test_mrl_trainer import one_thread, tiny_config, tiny_policy  # noqa: F401 (one_thread: an autouse fixture)

ONLY_THE_MEMORY_TERM = ["mrl.memory_backprop=episode", "mrl.objective.memory_gain_coef=1",
                        "mrl.objective.policy_coef=0", "mrl.objective.entropy_coef=0",
                        "mrl.objective.reference_kl_coef=0", "mrl.objective.stabilisation_kl_coef=0",
                        "mrl.objective.memory_coef=0", "mrl.objective.value_coef=0"]


@pytest.fixture(scope="module")
def tokenizer():
    from rxmrl.data import default_tokenizer

    return default_tokenizer()


def loss_inputs(reference: ReferenceLikelihood | None, samples: int = 2, tokens: int = 3) -> LossInputs:
    """A minibatch of ``samples`` one-step samples whose policy terms are all 0 but for the entropy."""
    torch.manual_seed(0)
    log_probs = torch.randn(samples, tokens, requires_grad=True)
    stm = torch.zeros(samples, 1, 2, 4)
    zero = torch.zeros(samples)
    return LossInputs(log_probs=log_probs, old_log_probs=log_probs.detach(), ref_log_probs=log_probs.detach(),
                      entropy=torch.ones(samples, tokens), mask=torch.ones(samples, tokens, dtype=torch.bool),
                      advantages=zero, values=zero, old_values=zero, returns=zero, stm=stm, stm_prev=stm,
                      steps=zero.long(), reference=reference)


def test_the_memory_term_is_zero_when_real_and_reset_memory_give_the_same_likelihood():
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3]])).requires_grad_(True)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    same = memory_gain_loss(ReferenceLikelihood(log_probs, log_probs.detach().clone(), mask))
    assert float(same.detach()) == 0.0
    same.backward()  # the reset side is a stopped baseline: the gradient is the real side's log-likelihood
    torch.testing.assert_close(log_probs.grad, -mask.float() / 5)


def test_the_memory_term_is_minus_the_mean_token_gain_of_the_reference_answer():
    real = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
    reset = torch.tensor([[-3.0, -2.5], [-0.5, -1.0]])
    mask = torch.tensor([[True, True], [True, False]])  # the -9 is padding
    assert float(memory_gain_loss(ReferenceLikelihood(real, reset, mask))) == pytest.approx(-(2.0 + 0.5 + 0.0) / 3)


def test_mrl_loss_adds_the_weighted_memory_term_and_logs_it_only_when_given():
    real = torch.full((2, 3), -1.0)
    reference = ReferenceLikelihood(real, torch.full((2, 3), -2.0), torch.ones(2, 3, dtype=torch.bool))
    cfg = ObjectiveConfig(memory_gain_coef=0.5)
    without, terms = mrl_loss(loss_inputs(None), cfg)
    assert "loss/memory_gain" not in terms  # off: the records are what they were
    with_term, terms = mrl_loss(loss_inputs(reference), cfg)
    assert float(terms["loss/memory_gain"]) == -1.0
    assert float(with_term.detach()) == pytest.approx(float(without.detach()) - 0.5)


def test_the_policy_weight_scales_only_the_policy_term():
    batch = loss_inputs(None)
    batch.advantages = torch.tensor([1.0, -2.0])
    full, terms = mrl_loss(batch, ObjectiveConfig())
    off, _ = mrl_loss(batch, ObjectiveConfig(policy_coef=0.0))
    assert float(terms["loss/policy"]) != 0.0
    assert float((full - off).detach()) == pytest.approx(float(terms["loss/policy"]))


@pytest.mark.parametrize("group", [1, 2])
def test_the_memory_terms_gradient_reaches_the_first_write_of_an_episode(tokenizer, tmp_path, group):
    """Only the memory term trains; the episode's STM chain is rebuilt from its STM_0, so the gain of every
    step's reference answer reaches the encoded data of write 0 (the saved first interaction)."""
    grouped = ["mrl.group_size=2", "mrl.advantages.estimator=grpo"] if group == 2 else []
    cfg = tiny_config(*ONLY_THE_MEMORY_TERM, *grouped, steps=(3,))
    trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=tmp_path)
    stage = cfg.stages[0]
    trainer._enter_stage(stage)
    torch.manual_seed(5)
    rollout = trainer.collect(stage, trainer.stage_data[0][0], [0, 1, 2])
    assert rollout.reference_answers is not None and rollout.reference_mask.any(1).all()  # y* of every sample
    samples = PpoSamples(rollout, rollout.rewards, cfg.mrl)
    rollout.encoded = rollout.encoded.clone().requires_grad_(True)  # the writes' encoded data, ED_0..ED_2
    loss, terms = samples.loss(trainer.learner, episode_samples(torch.tensor([1]), 3, 3, group))
    assert float(loss.detach()) == pytest.approx(float(terms["loss/memory_gain"]))  # nothing else trains
    loss.backward()
    per_sample = rollout.encoded.grad.flatten(1).abs().sum(1).view(3, 3, group)  # [step, episode, member]
    assert per_sample[0, 1, 0] > 0  # the first write of the episode in the minibatch (member 0 carries the chain)
    assert per_sample[:, [0, 2]].sum() == 0  # and no other episode's
    trainer.close()


def test_the_memory_term_needs_whole_episodes():
    with pytest.raises(ValueError, match='set memory_backprop = "episode"'):
        tiny_config("mrl.objective.memory_gain_coef=1").mrl.validate()
    with pytest.raises(ValueError, match='algorithm = "ppo"'):
        tiny_config("mrl.objective.memory_gain_coef=1", "mrl.algorithm=dmpo", "mrl.group_size=2").mrl.validate()


def test_the_terms_that_train_name_the_control_arm_apart():
    control = tiny_config(*ONLY_THE_MEMORY_TERM).mrl.objective
    assert trained_terms(control, with_critic=True) == ["memory_gain"]
    default = ObjectiveConfig()
    assert trained_terms(default, with_critic=False) == ["policy", "entropy", "reference_kl", "stabilisation_kl",
                                                          "memory"]
    assert "value" in trained_terms(default, with_critic=True)


def evaluation(final: list[float] | None) -> Evaluation:
    recall = torch.tensor([0.5, 0.5, 0.5])
    return Evaluation(recall, recall, 0.5, recall,
                      episode_final_recall=None if final is None else torch.tensor(final))


def test_final_recall_is_compared_per_episode_and_null_without_a_final_question():
    after, warm, blank = evaluation([1.0, 0.0, math.nan]), evaluation([0.0, 0.0, 0.5]), evaluation([0.0, 0.0, 0.0])
    out = final_recall_intervals(after, warm, blank)
    assert out["final_recall_difference"]["mean"] == pytest.approx(0.5)  # pairs (1, 0), (0, 0); the NaN one left out
    assert out["mrl_memory_final_recall_gain"]["mean"] == pytest.approx(0.5)
    cumulative = evaluation([math.nan] * 3)
    assert final_recall_intervals(cumulative, cumulative, cumulative) == {
        "final_recall_difference": None, "mrl_memory_final_recall_gain": None}
    assert final_recall_intervals(evaluation(None), warm, blank)["final_recall_difference"] is None


def comparison_row(stage: int, final: dict | None) -> dict:
    interval = {"mean": 0.1, "ci95_low": 0.0, "ci95_high": 0.2}
    summary = {"reward": 1.0, "fact_recall": 0.5, "final_recall": None if final is None else 0.25}
    return {"stage": stage, "steps": 16, "strategy": "mixed", "warm_start": summary, "mrl": summary,
            "difference": interval, "differences": {}, "fact_recall_difference": interval,
            "mrl_no_memory": summary, "mrl_memory_recall_gain": interval, "final_recall_difference": final,
            "mrl_memory_final_recall_gain": final}


def test_the_comparison_table_shows_final_recall_where_a_stage_asks_the_final_question():
    final = {"mean": 0.125, "ci95_low": 0.05, "ci95_high": 0.2}
    table = comparison_table({"stages": [comparison_row(0, None), comparison_row(1, final)]})
    header, _, cumulative, long_range = table.splitlines()
    assert "final recall: warm start" in header
    assert cumulative.endswith("| – | – | – | – |")
    assert long_range.endswith("| 0.250 | 0.250 | +0.125 [+0.050, +0.200] | +0.125 [+0.050, +0.200] |")
    assert "final recall" not in comparison_table({"stages": [comparison_row(0, None)]})
    assert comparison_note({"objective_terms": ["memory_gain"]}) == "The objective's terms that trained: `memory_gain`."
