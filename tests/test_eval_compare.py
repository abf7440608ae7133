"""``rxmrl eval``: published rows beside ours, and ``--compare A B`` with the paired difference."""

import json

import numpy as np
import pytest

from rxmrl.cli import main
from rxmrl.evaluation.compare import compare
from rxmrl.evaluation.reward_range import EvaluationResult


def result(rewards: np.ndarray, recall: np.ndarray) -> EvaluationResult:
    return EvaluationResult(agent="x", step_rewards=rewards, fact_recall=recall, held_fact_recall=recall,
                            final_recall=np.full(rewards.shape, np.nan), components={},
                            modes=[["standard"] * rewards.shape[1]] * rewards.shape[0], seconds=1.0)


def test_paired_difference_cancels_episode_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.normal(5, 2, (40, 1))  # shared by both agents: large between episodes
    a = result(difficulty + 0.3 + rng.normal(0, 0.05, (40, 3)), np.ones((40, 3)))
    b = result(difficulty + rng.normal(0, 0.05, (40, 3)), np.full((40, 3), 0.5))
    comparison = compare(a, b)
    assert 0.25 < comparison.reward_difference.ci_low < 0.3 < comparison.reward_difference.ci_high < 0.35
    assert a.reward().ci_low < b.reward().ci_high  # unpaired intervals overlap, the paired one excludes 0
    assert comparison.fact_recall_difference.mean == pytest.approx(0.5)


def test_fact_recall_difference_pairs_only_episodes_with_facts():
    recall_a = np.array([[1.0], [np.nan], [0.0]])
    recall_b = np.array([[0.0], [1.0], [0.0]])
    comparison = compare(result(np.ones((3, 1)), recall_a), result(np.ones((3, 1)), recall_b))
    assert comparison.fact_recall_difference.mean == pytest.approx(0.5)  # episodes 0 and 2


def test_compare_refuses_results_on_different_episodes():
    with pytest.raises(ValueError, match=r"cannot pair x \(3 episodes x 2 steps\) with x \(4 x 2\)"):
        compare(result(np.ones((3, 2)), np.ones((3, 2))), result(np.ones((4, 2)), np.ones((4, 2))))


def test_eval_table_shows_the_published_rows_labelled(capsys):
    code = main(["eval", "--agent", "oracle", "--config", "steps-2", "--episodes", "3", "--similarity", "random-embedding"])
    out = capsys.readouterr().out
    assert code == 0 and "agent oracle" in out
    published = out[out.index("published rows"):]
    assert "different data" not in out[:out.index("published rows")]
    assert "their data, reward and model sizes" in published
    assert "RxT-Alpha Mini (published)" in published and "22M stateless LLM (published)" in published
    mini = next(line for line in published.splitlines() if line.startswith("RxT-Alpha Mini"))
    assert [float(x) for x in mini.split()[-3:]] == [3.7, 1.8, 6.2]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    import torch

    from rxmrl.model import ReactiveTransformer, get_preset
    from rxmrl.data import default_tokenizer

    torch.manual_seed(0)
    tokenizer = default_tokenizer()
    config = get_preset("nano", vocab_size=tokenizer.vocab_size, dim=32, num_layers=1, num_heads=2,
                        query_heads=2, kv_heads=2, num_experts=2, expert_dim=32, encoder_ff_dim=32, stm_slots=8)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    ReactiveTransformer(config).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def test_compare_a_checkpoint_with_the_oracle_on_the_same_episodes(tiny_checkpoint, capsys):
    code = main(["eval", "--compare", str(tiny_checkpoint), "oracle", "--config", "steps-2", "--episodes", "4",
                 "--similarity", "random-embedding", "--max-new-tokens", "4", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["a"]["agent"] == "rxt" and summary["b"]["agent"] == "oracle"
    assert summary["a"]["episodes"] == summary["b"]["episodes"] == 4
    difference = summary["difference"]["reward"]
    assert difference["mean"] == pytest.approx(summary["a"]["reward"]["mean"] - summary["b"]["reward"]["mean"])
    assert difference["ci_high"] < 0  # an untrained model answers far worse than the references
    assert summary["difference"]["fact_recall"]["mean"] < 0


def test_compare_prints_both_tables_and_the_difference(tiny_checkpoint, capsys):
    code = main(["eval", "--compare", "random", str(tiny_checkpoint), "--config", "steps-2", "--episodes", "3",
                 "--similarity", "random-embedding", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert code == 0
    assert "A: agent random" in out and "B: agent rxt" in out
    assert "paired difference A - B over 3 episodes (95% bootstrap CI)" in out and "published rows" in out


def test_compare_pairs_each_agent_with_the_last_one_the_baseline(tiny_checkpoint, capsys):
    code = main(["eval", "--compare", str(tiny_checkpoint), "random", "oracle", "--config", "steps-2",
                 "--episodes", "3", "--similarity", "random-embedding", "--max-new-tokens", "4", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["baseline"]["name"] == "oracle" and [a["name"] for a in summary["agents"]] == [
        str(tiny_checkpoint), "random"]
    for agent, difference in zip(summary["agents"], summary["differences"], strict=True):
        assert difference["reward"]["mean"] == pytest.approx(agent["reward"]["mean"]
                                                              - summary["baseline"]["reward"]["mean"])
        assert difference["reward"]["ci_high"] < 0  # nobody answers like the references
    assert main(["eval", "--compare", "oracle"]) == 2
    assert "--compare needs two agents or more" in capsys.readouterr().err


def test_compare_of_three_prints_every_row_and_each_difference_to_the_baseline(tiny_checkpoint, capsys):
    code = main(["eval", "--compare", "random", str(tiny_checkpoint), "oracle", "--config", "steps-2",
                 "--episodes", "3", "--similarity", "random-embedding", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("baseline oracle: agent oracle")
    assert f"\n{tiny_checkpoint}: agent rxt" in out and "\nrandom: agent random" in out
    assert "paired differences to the baseline over 3 episodes (95% bootstrap CI):" in out
    assert f"  {tiny_checkpoint}: reward -" in out and "  random: reward -" in out
