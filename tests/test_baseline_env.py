"""The stateless baseline agent in the MRL environment (single and batched forms)."""

from __future__ import annotations

import math

import pytest

from rxmrl.baseline.agent import StatelessAgent
from rxmrl.baseline.data import turn_ids
from rxmrl.baseline.model import build_stateless_model
from rxmrl.data import load_curriculum
from rxmrl.envs import BatchedMrlEnv, MrlEnv, run_episode

STEPS = 3


@pytest.fixture(scope="module")
def episodes():
    return load_curriculum("embedded", STEPS, "validation", num_episodes=2).episodes


def test_stateless_agent_answers_every_step_and_rereads_a_growing_history(tokenizer, nano, episodes):
    env = MrlEnv(episodes=episodes, steps=STEPS, similarity="random-embedding", tokenizer=tokenizer, order="sequential")
    agent = StatelessAgent(build_stateless_model(nano, seed=0, max_position_embeddings=1024), tokenizer,
                           max_new_tokens=6)
    infos = run_episode(env, agent, seed=0)
    episode = episodes[0]  # sequential order: the first row
    assert [info["query"] for info in infos] == [i.query for i in episode.interactions[:STEPS]]
    assert all(0.0 <= info["reward"] <= 10.0 and math.isfinite(info["reward"]) for info in infos)

    # turn j reads [BOS] + every interaction written so far + [Q] q_j [A]; RxT reads [BOS][Q] q_j [A] alone
    written = [episode.all_interactions()[0]] + [type(episode.interactions[0])(i["query"], i["write_to_memory"])
                                                 for i in infos[:-1]]
    for j, record in enumerate(agent.records):
        history = sum(len(turn_ids(tokenizer, w)) for w in written[: j + 1])
        query = len(tokenizer.encode(episode.interactions[j].query)) + 2
        assert record.prompt_tokens == 1 + history + query
    stateless = [r.prompt_tokens for r in agent.records]
    rxt = [len(tokenizer.encode_prompt(i.query)) for i in episode.interactions[:STEPS]]
    assert all(b > a for a, b in zip(stateless, stateless[1:]))
    assert max(rxt) - min(rxt) < stateless[-1] - stateless[0]


def test_batched_answers_equal_one_conversation_at_a_time(tokenizer, nano, episodes):
    model = build_stateless_model(nano, seed=0, max_position_embeddings=1024)
    batched_env = BatchedMrlEnv(len(episodes), episodes=episodes, steps=STEPS, similarity="random-embedding",
                                tokenizer=tokenizer, order="sequential", teacher_forcing=True)
    agent = StatelessAgent(model, tokenizer, max_new_tokens=6)
    start = batched_env.reset(seed=0)
    agent.begin_batch(start)
    query, batched = start.query, []
    for _ in range(STEPS):
        answers = agent.answer_batch(query)
        batched.append(answers.to_lists())
        out = batched_env.step(answers)
        if out.done:
            break
        agent.remember_batch(query, out.write_to_memory)
        query = out.next_query
    for b, episode in enumerate(start.episodes):
        single = StatelessAgent(model, tokenizer, max_new_tokens=6)
        single.begin_episode(episode.query, episode.answer)
        for j, follow_up in enumerate(episode.interactions[:STEPS]):
            answer = single.answer(follow_up.query)
            assert tokenizer.decode(batched[j][b]) == answer
            single.remember(follow_up.query, follow_up.answer)  # teacher forcing, as in the batched env


def test_rxmrl_eval_loads_a_baseline_folder_as_the_stateless_agent(tmp_path, tokenizer, nano, capsys):
    from rxmrl.cli import main

    build_stateless_model(nano, seed=0, max_position_embeddings=512).save_pretrained(tmp_path / "baseline")
    tokenizer.save(tmp_path / "baseline")
    code = main(["eval", "--agent", str(tmp_path / "baseline"), "--config", "steps-2", "--episodes", "2",
                 "--similarity", "random-embedding", "--max-new-tokens", "6", "--batch-size", "2"])
    table = capsys.readouterr().out
    assert code == 0 and table.startswith("agent stateless") and "step 1" in table
