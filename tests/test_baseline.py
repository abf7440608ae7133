"""The stateless LLM baseline: size matching, history prompts, TRL SFT, the agent and per-turn latency."""

from __future__ import annotations

import json

import pytest
import torch

from rxmrl.baseline.data import episode_examples, fit_history, history_dataset, history_prompt, turn_ids
from rxmrl.baseline.model import SIZE_TOLERANCE, build_stateless_model, size_report
from rxmrl.data import Episode, Interaction, load_curriculum
from rxmrl.model import ReactiveTransformer, get_preset
from rxmrl.special_tokens import ANSWER_ID, BOS_ID, EOS_ID, QUERY_ID


@pytest.fixture(scope="module")
def episode():
    return load_curriculum("embedded", 4, "validation", num_episodes=1)[0]


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("preset", ["nano", "micro"])
@pytest.mark.parametrize("match", ["total", "decoder_active"])
def test_stateless_model_size_is_within_tolerance_of_the_rxt_preset(tokenizer, preset, match):
    rxt = get_preset(preset, vocab_size=tokenizer.vocab_size)
    model = build_stateless_model(rxt, match)
    report = size_report(model, rxt, match)
    assert abs(report["relative_difference"]) <= SIZE_TOLERANCE, report
    assert model.config.vocab_size == tokenizer.vocab_size
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (BOS_ID, EOS_ID, 0)


def test_size_matching_names_the_count_when_the_preset_is_too_small(tokenizer, nano):
    with pytest.raises(ValueError, match="too small for a 40-layer Llama"):
        build_stateless_model(nano, "decoder_active", num_layers=40)


def test_same_seed_builds_the_same_weights(nano):
    first, second = build_stateless_model(nano, seed=3), build_stateless_model(nano, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


# ------------------------------------------------------------------------------------------------- data
def test_history_prompt_holds_every_earlier_interaction_and_ends_with_the_answer_marker(tokenizer, episode):
    history = episode.all_interactions()[:3]  # the saved interaction and two follow-ups
    query = episode.interactions[2].query
    prompt = history_prompt(tokenizer, history, query)
    expected = [BOS_ID]
    for interaction in history:
        expected += turn_ids(tokenizer, interaction)
    expected += [QUERY_ID, *tokenizer.encode(query), ANSWER_ID]
    assert prompt.ids == expected
    assert prompt.ids[-1] == ANSWER_ID and not prompt.truncated
    text = tokenizer.decode(prompt.ids, skip_special_tokens=True)
    for interaction in history:
        assert interaction.query in text and interaction.answer in text


def test_left_truncation_drops_the_oldest_turns_first_and_counts_them():
    turns = [[QUERY_ID, 10, ANSWER_ID, 11, EOS_ID], [QUERY_ID, 20, ANSWER_ID, 21, EOS_ID]]
    open_turn = [QUERY_ID, 30, ANSWER_ID]
    whole = fit_history(turns, open_turn, None)
    assert len(whole.ids) == 14 and not whole.truncated
    cut = fit_history(turns, open_turn, 9)  # room for [BOS] + the newest turn + the open one
    assert cut.ids == [BOS_ID, QUERY_ID, 20, ANSWER_ID, 21, EOS_ID, QUERY_ID, 30, ANSWER_ID]
    assert (cut.dropped_turns, cut.dropped_tokens) == (1, 5)
    tiny = fit_history(turns, open_turn, 3)  # even the query is cut: its newest tokens stay
    assert tiny.ids == [BOS_ID, 30, ANSWER_ID] and tiny.dropped_tokens == 11


def test_each_example_completes_a_turn_with_its_reference_answer(tokenizer, episode):
    examples = episode_examples(tokenizer, episode, max_length=512, steps=2)
    assert [e.turn for e in examples] == [-1, 0, 1]
    follow_up = examples[2]
    assert follow_up.completion_ids == [*tokenizer.encode(episode.interactions[1].answer), EOS_ID]
    assert follow_up.prompt_ids == history_prompt(tokenizer, episode.all_interactions()[:2],
                                                  episode.interactions[1].query).ids
    assert follow_up.completion_mask == [0] * len(follow_up.prompt_ids) + [1] * len(follow_up.completion_ids)


def test_history_dataset_counts_truncated_rows(tokenizer):
    episodes = load_curriculum("embedded", 4, "train", num_episodes=3).episodes
    _, roomy = history_dataset(tokenizer, episodes, max_length=1024)
    dataset, tight = history_dataset(tokenizer, episodes, max_length=96)
    assert roomy.truncated_examples == 0 and tight.truncated_examples > 0 and tight.dropped_turns > 0
    assert len(dataset) == 3 * 5 and max(map(len, dataset["input_ids"])) <= 96


# ------------------------------------------------------------------------------------------------ train
def test_sft_lowers_the_completion_loss_and_saves_a_loadable_model(tmp_path, tokenizer, episode):
    from rxmrl.baseline.agent import load_stateless_agent
    from rxmrl.baseline.train import RESULT_FILE, BaselineConfig, train_baseline

    config = BaselineConfig(output_dir=str(tmp_path / "baseline"))
    config.model.max_length = 256
    config.data.num_episodes, config.data.eval_episodes, config.data.steps = 8, 4, 2
    config.sft.max_steps, config.sft.batch_size, config.sft.logging_steps = 12, 4, 3
    config.sft.torch_threads = 1
    result = train_baseline(config, tokenizer, verbose=False)
    assert result.train_losses[-1] < result.train_losses[0]
    assert result.loss_after < result.loss_before - 0.5
    saved = json.loads((tmp_path / "baseline" / RESULT_FILE).read_text())
    assert saved["loss_after"] == pytest.approx(result.loss_after)
    config.output_dir = str(tmp_path / "again")
    assert train_baseline(config, tokenizer, verbose=False).train_losses == result.train_losses  # seeded

    agent = load_stateless_agent(tmp_path / "baseline", max_new_tokens=8)
    agent.begin_episode(episode.query, episode.answer)
    assert isinstance(agent.answer(episode.interactions[0].query), str)


# ------------------------------------------------------------------------------------------------ agent
def test_agent_rereads_the_history_so_its_prompt_grows_every_turn(tokenizer, nano, episode):
    from rxmrl.baseline.agent import StatelessAgent

    agent = StatelessAgent(build_stateless_model(nano, seed=0, max_position_embeddings=1024), tokenizer,
                           max_new_tokens=4)
    agent.begin_episode(episode.query, episode.answer)
    for follow_up in episode.interactions[:3]:
        agent.answer(follow_up.query)
        agent.remember(follow_up.query, follow_up.answer)
    lengths = [r.prompt_tokens for r in agent.records]
    grown = [b - a for a, b in zip(lengths, lengths[1:])]
    # each turn adds exactly the interaction written before it, minus the change in query length
    for j, growth in enumerate(grown):
        added = turn_ids(tokenizer, episode.interactions[j])
        query_change = len(tokenizer.encode(episode.interactions[j + 1].query)) - len(
            tokenizer.encode(episode.interactions[j].query))
        assert growth == len(added) + query_change
    assert all(r.new_tokens <= 4 and r.seconds > 0 and r.dropped_tokens == 0 for r in agent.records)


def test_agent_truncates_history_to_its_context(tokenizer, nano, episode):
    from rxmrl.baseline.agent import StatelessAgent

    agent = StatelessAgent(build_stateless_model(nano, seed=0), tokenizer, max_new_tokens=4, context_length=60)
    agent.begin_episode(episode.query, episode.answer)
    for follow_up in episode.interactions[:3]:
        agent.answer(follow_up.query)
        agent.remember(follow_up.query, follow_up.answer)
    assert all(r.prompt_tokens <= 56 for r in agent.records)
    assert agent.records[-1].dropped_tokens > 0


# ---------------------------------------------------------------------------------------------- latency
def test_latency_has_one_row_per_turn_with_growing_stateless_and_flat_rxt_prompts(tmp_path, tokenizer, nano):
    from rxmrl.baseline.latency import format_latency_table, latency_conversation, measure_latency, plot_latency
    from rxmrl.runtime import torch_threads

    torch.manual_seed(0)
    rxt = ReactiveTransformer(nano)
    stateless = build_stateless_model(nano, seed=0)
    conversation = latency_conversation(4)
    with torch_threads(1):  # steadier timings on a shared CPU
        rows = measure_latency(stateless, rxt, tokenizer, conversation, repeats=1)
    assert [r.turn for r in rows] == [0, 1, 2, 3]
    for row, interaction in zip(rows, conversation):
        assert row.rxt_prompt_tokens == len(tokenizer.encode_prompt(interaction.query))
        assert row.answer_tokens == len(tokenizer.encode(interaction.answer)) + 1
        assert row.stateless_seconds > 0 and row.rxt_seconds > 0 and row.rxt_memory_seconds > 0
    prompts = [r.stateless_prompt_tokens for r in rows]
    assert prompts[0] == rows[0].rxt_prompt_tokens and all(b > a for a, b in zip(prompts, prompts[1:]))
    flops = [r.stateless_gflops / r.rxt_gflops for r in rows]
    assert flops[-1] > flops[0]  # the stateless model's compute per turn grows relative to RxT's
    assert format_latency_table(rows).count("\n") == len(rows) + 1
    png = plot_latency(rows, tmp_path / "latency.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_rejects_an_empty_conversation(tokenizer, nano):
    from rxmrl.baseline.latency import measure_latency

    with pytest.raises(ValueError, match="conversation is empty"):
        measure_latency(build_stateless_model(nano), ReactiveTransformer(nano), tokenizer, [])


# -------------------------------------------------------------------------------------------------- CLI
def test_baseline_train_command_rejects_an_unknown_config_key(capsys):
    from rxmrl.cli import main

    assert main(["baseline", "train", "--config", "experiments/baseline.toml", "--set", "sft.max_stepz=3"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: unknown key 'sft.max_stepz' in [sft].") and out.count("\n") == 1


def test_experiment_config_loads(tmp_path):
    from rxmrl.baseline.train import BaselineConfig
    from rxmrl.config import load_config

    config = load_config(BaselineConfig, "experiments/baseline.toml", ["sft.max_steps=5"])
    assert config.sft.max_steps == 5 and config.model.preset == "nano" and config.sft.torch_threads == 1


def test_grpo_prompts_read_back_to_the_history_ids(tokenizer, episode):
    from rxmrl.baseline.grpo import grpo_dataset

    dataset = grpo_dataset(tokenizer, [episode], max_prompt_tokens=512, steps=2)
    assert len(dataset) == 2 and dataset["mode"] == ["standard", "standard"]
    ids = tokenizer.to_hf()(text=dataset["prompt"][1])["input_ids"]
    assert ids == history_prompt(tokenizer, episode.all_interactions()[:2], episode.interactions[1].query).ids
    assert dataset["reference"][1] == episode.interactions[1].answer
    assert dataset["saved"][1] == f"{episode.interactions[0].query} {episode.interactions[0].answer}"


def test_grpo_runs_with_the_memory_retention_reward_and_saves(tmp_path, tokenizer, nano):
    from rxmrl.baseline.grpo import GRPO_RESULT_FILE, GRPORunConfig, train_baseline_grpo

    build_stateless_model(nano, seed=0, max_position_embeddings=512).save_pretrained(tmp_path / "sft")
    tokenizer.save(tmp_path / "sft")
    config = GRPORunConfig(checkpoint=str(tmp_path / "sft"), output_dir=str(tmp_path / "grpo"))
    config.data.num_episodes, config.data.steps = 4, 2
    config.grpo.max_steps, config.grpo.logging_steps, config.grpo.max_completion_length = 2, 1, 8
    config.grpo.similarity, config.grpo.torch_threads = "policy-embedding", 1
    result = train_baseline_grpo(config, verbose=False)
    assert len(result.rewards) == 2 and all(0.0 <= r <= 10.0 for r in result.rewards)
    assert (tmp_path / "grpo" / GRPO_RESULT_FILE).is_file() and (tmp_path / "grpo" / "tokenizer.json").is_file()


def test_latency_times_the_two_models_in_turns_and_keeps_each_median():
    from rxmrl.baseline.latency import _median_seconds

    calls: list[str] = []
    medians = _median_seconds([lambda: calls.append("stateless"), lambda: calls.append("rxt")], repeats=3)
    assert calls == ["stateless", "rxt"] * 3  # a slow spell hits both, not whichever was timed in it
    assert len(medians) == 2 and all(m >= 0 for m in medians)
