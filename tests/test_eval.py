"""The reward-range evaluation: result tables, bootstrap intervals, and the ``rxmrl eval`` command."""

import numpy as np
import pytest

from rxmrl.cli import main
from rxmrl.data import load_curriculum
from env_helpers import hand_made_episode, hand_made_long_range_episode
from rxmrl.envs import Agent, BatchedMrlEnv, OracleAgent, RandomAgent
from rxmrl.evaluation import bootstrap_interval, evaluate
from rxmrl.evaluation.compare import compare


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_more_episodes():
    rng = np.random.default_rng(0)
    small, large = rng.normal(5, 1, 20), rng.normal(5, 1, 2000)
    low_s, high_s = bootstrap_interval(small)
    low_l, high_l = bootstrap_interval(large)
    assert low_s < small.mean() < high_s and low_l < large.mean() < high_l
    assert high_l - low_l < (high_s - low_s) / 4
    assert np.isnan(bootstrap_interval(np.array([np.nan]))[0])


def test_evaluate_summarises_every_episode_and_step():
    env = BatchedMrlEnv(3, steps=2, split="validation", num_episodes=5, similarity="random-embedding", order="sequential")
    result = evaluate(OracleAgent(), env)
    assert result.step_rewards.shape == (5, 2) and result.num_episodes == 5
    assert result.episode_rewards == pytest.approx(result.step_rewards.mean(axis=1))
    stat = result.reward()
    assert stat.min <= stat.ci_low <= stat.mean <= stat.ci_high <= stat.max
    assert result.recall().mean == 1.0
    table = result.format_table()
    assert "episode" in table and "step 1" in table and "episodes/s" in table
    assert result.summary()["steps"][1]["reward"]["mean"] == pytest.approx(result.step_rewards[:, 1].mean())


def test_oracle_lands_far_above_random_with_the_sentence_encoder():
    episodes = load_curriculum("embedded", config="steps-2", split="validation", num_episodes=6)
    env = BatchedMrlEnv(6, steps=2, split="validation", num_episodes=6, order="sequential")
    oracle = evaluate(OracleAgent(), env, seed=0)
    random = evaluate(RandomAgent(list(episodes), seed=0), env, seed=0)
    assert oracle.reward().ci_low > random.reward().ci_high + 2
    assert oracle.recall().mean > random.recall().mean


def test_eval_command_prints_the_table(capsys):
    code = main(["eval", "--agent", "random", "--config", "steps-2", "--episodes", "4", "--similarity", "random-embedding",
                 "--batch-size", "3"])
    out = capsys.readouterr().out
    assert code == 0
    assert "agent random" in out and "4 episodes" in out and "step 1" in out and "fact recall" in out


def test_eval_command_reports_an_unknown_agent_in_one_line(capsys):
    code = main(["eval", "--agent", "/no/such/checkpoint", "--config", "steps-2", "--episodes", "2",
                 "--similarity", "random-embedding"])
    assert code == 2 and "expected 'oracle', 'random' or a checkpoint folder" in capsys.readouterr().err


def test_eval_command_runs_a_reactive_transformer_checkpoint(tmp_path, capsys):
    import torch

    from rxmrl.model.config import get_preset
    from rxmrl.model.rxt import ReactiveTransformer
    from rxmrl.data import default_tokenizer

    torch.manual_seed(0)
    config = get_preset("nano", vocab_size=default_tokenizer().vocab_size, dim=32, num_layers=1, num_heads=2,
                        query_heads=2, kv_heads=2, num_experts=2, expert_dim=32, encoder_ff_dim=32, stm_slots=8)
    ReactiveTransformer(config).save_pretrained(tmp_path / "tiny")
    code = main(["eval", "--agent", str(tmp_path / "tiny"), "--config", "steps-2", "--episodes", "2",
                 "--similarity", "random-embedding", "--max-new-tokens", "4", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    summary = __import__("json").loads(out)
    assert summary["agent"] == "rxt" and summary["episodes"] == 2 and len(summary["steps"]) == 2
    assert 0 <= summary["reward"]["mean"] <= 10
    assert summary["sampling"] == "greedy"  # unless asked otherwise
    assert main(["eval", "--agent", str(tmp_path / "tiny"), "--config", "steps-2", "--episodes", "2",
                 "--similarity", "random-embedding", "--max-new-tokens", "4", "--json", "--temperature", "0.8",
                 "--top-k", "20"]) == 0
    assert __import__("json").loads(capsys.readouterr().out)["sampling"] == "sampled (temperature 0.8, top-k 20)"


class ScriptedAgent(Agent):
    """Answers step i of every episode with ``script[i]``."""

    name = "scripted"

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script = script

    def begin_batch(self, start) -> None:
        self._step, self._rows = 0, len(start.episodes)

    def answer_batch(self, queries):
        self._step += 1
        return self._encode_answers([self.script[self._step - 1]] * self._rows, queries.ids.device)


def test_final_recall_is_the_long_range_final_question_alone_with_its_interval():
    episodes = [hand_made_long_range_episode(3, tag) for tag in ("", "2", "3")]
    env = BatchedMrlEnv(3, episodes=episodes, steps=3, similarity="random-embedding", order="sequential")
    remembers = evaluate(ScriptedAgent(["Mia had a blue cup.", "It was blue.", "The kite was red."]), env, 3)
    forgets = evaluate(ScriptedAgent(["Mia had a blue cup.", "It was blue.", "I forgot the kite."]), env, 3)
    assert remembers.episode_final_recall.tolist() == [1.0] * 3 and forgets.episode_final_recall.tolist() == [0.0] * 3
    assert np.isnan(remembers.final_recall[:, :2]).all()  # the distractor turns are not the final question
    assert remembers.fact_recall[:, 1].tolist() == forgets.fact_recall[:, 1].tolist() == [1.0] * 3
    assert np.isnan(remembers.fact_recall[:, 0]).all()  # the topic switch asks no fact: no recall, not a free 1.0
    assert forgets.episode_fact_recall.tolist() == [0.5] * 3  # (1 + 0) / 2 asked steps, not (1 + 1 + 0) / 3
    final = forgets.final_question_recall()
    assert (final.mean, final.ci_low, final.ci_high) == (0.0, 0.0, 0.0)
    assert forgets.summary()["final_recall"]["mean"] == 0.0 and remembers.summary()["final_recall"]["mean"] == 1.0
    assert "final recall [95% CI] 1.000 [1.000, 1.000]: the long-range final question" in remembers.format_table()
    difference = compare(remembers, forgets)
    assert difference.final_recall_difference.mean == 1.0
    assert difference.summary()["difference"]["final_recall"]["mean"] == 1.0
    assert "final recall +1.000 [+1.000, +1.000]" in difference.format_table()


def test_cumulative_episodes_have_no_final_recall_and_say_so():
    episodes = [hand_made_episode(3, tag=tag) for tag in ("", "2")]
    env = BatchedMrlEnv(2, episodes=episodes, steps=3, similarity="random-embedding", order="sequential")
    result = evaluate(ScriptedAgent(["The kite was red."] * 3), env, 2)
    assert result.recall().mean == 1.0 and np.isnan(result.episode_final_recall).all()
    assert result.final_question_recall() is None and result.summary()["final_recall"] is None
    assert "final recall: none (no long-range episode" in result.format_table()
    difference = compare(result, result)
    assert difference.final_recall_difference is None and difference.summary()["difference"]["final_recall"] is None
    assert "final recall none (no long-range final question)" in difference.format_table()


def test_eval_command_reports_the_final_recall_of_sixteen_step_long_range_episodes(capsys):
    import json

    assert main(["eval", "--agent", "oracle", "--config", "steps-16-lr", "--episodes", "2", "--similarity",
                 "random-embedding", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["steps"]) == 16 and summary["final_recall"]["mean"] == 1.0
    assert main(["eval", "--agent", "oracle", "--config", "steps-16", "--episodes", "2", "--similarity",
                 "random-embedding"]) == 0
    assert "step 15" in (out := capsys.readouterr().out) and "final recall: none" in out
