"""Reference agents in the environments: oracle, random (unrelated answers), and the RxT agent."""

import numpy as np
import pytest
import torch

from rxmrl.data import default_tokenizer, load_curriculum
from rxmrl.envs import BatchedMrlEnv, MrlEnv, OracleAgent, RandomAgent, RxTAgent, run_episode
from rxmrl.evaluation import evaluate
from rxmrl.model.config import get_preset
from rxmrl.model.rxt import ReactiveTransformer


@pytest.fixture(scope="module")
def episodes():
    return list(load_curriculum("embedded", config="steps-2", split="validation", num_episodes=8))


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = get_preset("nano", vocab_size=default_tokenizer().vocab_size, dim=32, num_layers=1, num_heads=2,
                        query_heads=2, kv_heads=2, num_experts=2, expert_dim=32, encoder_ff_dim=32, stm_slots=8)
    return ReactiveTransformer(config)


def test_oracle_answers_each_follow_up_with_its_reference(episodes):
    env = MrlEnv(episodes=episodes, steps=2, similarity="random-embedding")
    infos = run_episode(env, OracleAgent(), seed=0)
    assert [i["answer"] for i in infos] == [i["reference"] for i in infos]
    assert all(i["fact_recall"] == 1.0 for i in infos)


def test_random_agent_never_answers_with_its_own_episode_and_is_seeded(episodes):
    env = MrlEnv(episodes=episodes, steps=2, similarity="random-embedding")
    first = [run_episode(env, RandomAgent(episodes, seed=3), seed=s) for s in range(4)]
    again = [run_episode(env, RandomAgent(episodes, seed=3), seed=s) for s in range(4)]
    assert [[i["answer"] for i in run] for run in first] == [[i["answer"] for i in run] for run in again]
    for run in first:
        own = {i["reference"] for i in run}
        assert not own & {i["answer"] for i in run}


@pytest.mark.parametrize("mode", ["text", "token"])
def test_oracle_outscores_random_in_the_env(episodes, mode):
    env = MrlEnv(episodes=episodes, steps=2, similarity="random-embedding", mode=mode, order="sequential")
    oracle = [np.mean([i["reward"] for i in run_episode(env, OracleAgent(), seed=0 if k == 0 else None)])
              for k in range(len(episodes))]
    random_agent = RandomAgent(episodes, seed=0)
    random = [np.mean([i["reward"] for i in run_episode(env, random_agent, seed=0 if k == 0 else None)])
              for k in range(len(episodes))]
    assert min(oracle) > max(random)


def test_batched_oracle_and_random_match_their_text_form(episodes):
    env = BatchedMrlEnv(4, episodes=episodes, steps=2, similarity="random-embedding", order="sequential")
    start = env.reset(seed=0)
    agent = OracleAgent()
    agent.begin_batch(start)
    answers = agent.answer_batch(start.query)
    texts = default_tokenizer().decode_batch(answers.to_lists())
    assert texts == [e.interactions[0].answer for e in start.episodes]


def test_rxt_agent_answers_and_writes_its_memory(tiny_model, episodes):
    agent = RxTAgent(tiny_model, max_new_tokens=6, seed=0)
    env = BatchedMrlEnv(3, episodes=episodes, steps=2, similarity="random-embedding", order="sequential")
    start = env.reset(seed=0)
    agent.begin_batch(start)
    before = agent.stm.clone()
    assert before.shape[0] == 3
    answers = agent.answer_batch(start.query)
    assert bool((answers.ids[:, 0] == 4).all()) and bool((answers.lengths <= 7).all())
    out = env.step(answers)
    agent.remember_batch(start.query, out.write_to_memory)
    assert not torch.equal(agent.stm, before)


def test_rxt_agent_text_form_matches_its_batched_form(tiny_model, episodes):
    single = MrlEnv(episodes=episodes, steps=2, similarity="random-embedding", mode="token", order="sequential")
    text_rewards = [i["reward"] for i in run_episode(single, RxTAgent(tiny_model, max_new_tokens=6, seed=1), seed=0)]
    batched = BatchedMrlEnv(1, episodes=episodes, steps=2, similarity="random-embedding", order="sequential")
    result = evaluate(RxTAgent(tiny_model, max_new_tokens=6, seed=1), batched, 1, seed=0)
    assert result.step_rewards[0].tolist() == pytest.approx(text_rewards, abs=1e-5)


def test_teacher_forcing_writes_the_reference_whatever_the_agent_said(tiny_model, episodes):
    env = BatchedMrlEnv(2, episodes=episodes, steps=2, similarity="random-embedding", teacher_forcing=True, order="sequential")
    start = env.reset(seed=0)
    out = env.step(RandomAgent(episodes, seed=0)._encode_answers(["Nothing at all.", "Nope."]))
    assert out.write_to_memory.to_lists() == out.reference.to_lists()
