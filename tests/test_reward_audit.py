"""The reward audit: each case's answers on hand-made episodes, the paired figures, the command, and the exploit
that scoring against the true conversation closes."""

import json

import gymnasium
import numpy as np
import pytest

from rxmrl.cli import main
from rxmrl.data import Episode, Fact, Interaction, default_tokenizer
from rxmrl.envs import BatchedMrlEnv, MrlEnv, OracleAgent, PaddedIds, run_episode
from rxmrl.envs.batched import BatchReset
from rxmrl.evaluation.audit import run_audit, win_rate
from rxmrl.evaluation.audit_cases import (
    EmptyAgent, HistoryDumpAgent, OtherEpisodeAgent, PreviousAnswerAgent, RecordedAnswers, WrongFactAgent,
)
from rxmrl.rewards import episode_memory_targets

NAMES = ["Tom", "Ann", "Max", "Sue", "Ben", "Eva"]
COLOURS = ["red", "blue", "green", "pink", "gold", "grey"]
PLACES = ["park", "lake", "farm", "zoo", "beach", "hill"]


def kite_episode(n: int) -> Episode:
    name, colour, place = NAMES[n], COLOURS[n], PLACES[n]
    return Episode(
        f"Tell me about {name}.", f"{name} had a {colour} kite. {name} flew it at the {place}.",
        [Interaction(f"What colour was {name}'s kite?", f"{name}'s kite was {colour}. Then {name} ate a pie."),
         Interaction(f"Where did {name} fly the kite?", f"{name} flew it at the {place}.")],
        [[Fact(colour, 0)], [Fact(place, 0)]], "cumulative")


@pytest.fixture(scope="module")
def episodes():
    return [kite_episode(n) for n in range(len(NAMES))]


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def start_of(episodes, tokenizer) -> BatchReset:
    env = BatchedMrlEnv(len(episodes), episodes=episodes, steps=2, similarity="random-embedding", tokenizer=tokenizer)
    return env.reset(options={"episodes": episodes})


def texts(agent, start, tokenizer, steps=2) -> list[list[str]]:
    agent.begin_batch(start)
    answers = [agent.answer_batch(start.query) for _ in range(steps)]
    return [[tokenizer.decode(a.to_lists()[b]) for a in answers] for b in range(len(start.episodes))]


def test_wrong_fact_keeps_the_answer_and_swaps_every_remembered_word(episodes, tokenizer):
    start = start_of(episodes, tokenizer)
    targets = lambda e: episode_memory_targets(e, 2)  # noqa: E731
    answers = texts(WrongFactAgent(start.episodes, targets, seed=1, tokenizer=tokenizer), start, tokenizer)
    for episode, (first, second) in zip(start.episodes, answers):
        name, colour, place = episode.query.split()[-1][:-1], episode.facts[0][0].text, episode.facts[1][0].text
        assert colour not in first and first.startswith(f"{name}'s kite was ") and first.endswith(" ate a pie.")
        assert first.split()[3].rstrip(".") in COLOURS  # like for like: step 0 of every episode names a colour
        assert place not in second and second.split()[-1].rstrip(".") in PLACES
        assert "flew" not in second and second.startswith(f"{name} ")  # the memory token "flew" is swapped too


def test_previous_history_dump_and_empty_answers(episodes, tokenizer):
    start = start_of(episodes[:2], tokenizer)
    previous = texts(PreviousAnswerAgent(tokenizer), start, tokenizer)
    assert previous[0] == ["Tom had a red kite. Tom flew it at the park.", "Tom's kite was red. Then Tom ate a pie."]
    dump = texts(HistoryDumpAgent(tokenizer), start, tokenizer)
    assert dump[1][0] == "ann blue kite flew lake"  # content words of the saved interaction, once each
    assert set(dump[1][1].split()) == {"ann", "blue", "kite", "flew", "lake", "colour", "ate", "pie"}
    assert texts(EmptyAgent(tokenizer), start, tokenizer) == [["", ""], ["", ""]]


def test_other_episode_answers_come_from_a_partner_and_constant_repeats_its_first(episodes, tokenizer):
    start = start_of(episodes, tokenizer)
    other = texts(OtherEpisodeAgent(episodes, seed=3, tokenizer=tokenizer), start, tokenizer)
    constant = texts(OtherEpisodeAgent(episodes, seed=3, constant=True, tokenizer=tokenizer), start, tokenizer)
    partners = []
    for b, episode in enumerate(episodes):
        partner = next(e for e in episodes if e.interactions[0].answer == other[b][0])
        assert partner is not episode and other[b][1] == partner.interactions[1].answer
        assert constant[b] == [other[b][0], other[b][0]]
        partners.append(episodes.index(partner))
    assert sorted(partners) == list(range(len(episodes)))  # a derangement: every episode is somebody's partner


def test_recorded_answers_replay_exactly(episodes, tokenizer):
    env = BatchedMrlEnv(3, episodes=episodes, steps=2, similarity="random-embedding", order="sequential")
    recorded = RecordedAnswers(OtherEpisodeAgent(episodes, seed=0, tokenizer=tokenizer))
    from rxmrl.evaluation import evaluate

    first = evaluate(recorded, env, seed=0)
    again = evaluate(recorded.replay(), env, seed=0)
    np.testing.assert_array_equal(first.step_rewards, again.step_rewards)
    assert len(recorded.batches) == 2 and len(recorded.batches[0]) == 2


def test_audit_ranks_known_answers_and_pairs_episodes(episodes, tokenizer):
    envs = {p: BatchedMrlEnv(6, episodes=episodes, steps=2, reward=p, similarity="random-embedding",
                             order="sequential") for p in ("memory", "default")}
    cases = {"oracle": OracleAgent(tokenizer),
             "wrong_fact": WrongFactAgent(episodes, lambda e: episode_memory_targets(e, 2), tokenizer=tokenizer),
             "other_episode": OtherEpisodeAgent(episodes, tokenizer=tokenizer),
             "constant": OtherEpisodeAgent(episodes, constant=True, tokenizer=tokenizer),
             "history_dump": HistoryDumpAgent(tokenizer)}
    audit = run_audit(envs, cases)
    memory = audit.rewards["memory"]
    assert memory.gap("oracle", "wrong_fact").mean >= 3.0 and memory.win_rate("oracle", "wrong_fact") == 1.0
    assert memory.gap("oracle", "history_dump").mean >= 3.0
    summary = audit.summary()
    gaps = summary["rewards"]["memory"]["gaps"]
    assert set(gaps) == {"oracle - wrong_fact", "oracle - history_dump", "other_episode - constant"}
    assert gaps["oracle - wrong_fact"]["mean"] == pytest.approx(
        np.mean(np.subtract(summary["rewards"]["memory"]["cases"]["oracle"]["episode_rewards"],
                            summary["rewards"]["memory"]["cases"]["wrong_fact"]["episode_rewards"])))
    assert summary["rewards"]["memory"]["cases"]["oracle"]["memory_recall"] == 1.0
    assert "oracle - wrong_fact" in audit.format_table()
    assert win_rate(np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 4.0])) == pytest.approx(0.5)


def play_constant(saved_data: str, tokenizer) -> list[float]:
    """Rewards per step of one answer given at every step (random token ids, as a collapsed policy might)."""
    env = BatchedMrlEnv(6, episodes=[kite_episode(n) for n in range(6)], steps=2, similarity="random-embedding",
                        saved_data=saved_data, order="sequential")
    ids = np.random.default_rng(0).integers(20, 700, size=30).tolist()
    answer = PaddedIds.from_lists([[4, *ids, 2]] * 6)
    env.reset(seed=0)
    return [float(env.step(answer).rewards.mean()) for _ in range(2)]


def test_a_constant_answer_gains_nothing_for_agreeing_with_itself(tokenizer):
    as_written = play_constant("as_written", tokenizer)
    conversation = play_constant("conversation", tokenizer)
    assert as_written[1] > as_written[0] + 2.0  # the reference design pays it for matching its own last answer
    assert conversation[1] < conversation[0] + 0.5  # scored against the true conversation it stays at the floor
    assert as_written[0] == pytest.approx(conversation[0])  # step 0's saved data is the same either way


@pytest.mark.parametrize("mode", ["text", "token"])
def test_run_episode_accepts_a_gymnasium_make_env(mode, tokenizer):
    env = gymnasium.make("rxmrl/TinyStoriesMRL-Steps2-v0", split="validation", num_episodes=2, mode=mode,
                         similarity="random-embedding")
    infos = run_episode(env, OracleAgent(tokenizer), seed=0)
    assert len(infos) == 2 and all(info["fact_recall"] == 1.0 for info in infos)
    assert isinstance(env.unwrapped, MrlEnv) and env.unwrapped.mode == mode


def test_audit_command_writes_table_json_and_plots(tmp_path, capsys):
    out = tmp_path / "audit"
    code = main(["reward", "audit", "--preset", "memory", "--preset", "default", "--similarity", "random-embedding",
                 "--config", "steps-2", "--episodes", "4", "--cases", "oracle,wrong_fact,empty", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "oracle - wrong_fact" in printed and "memory" in printed
    summary = json.loads((out / "audit.json").read_text())
    assert set(summary["rewards"]) == {"memory", "default"}
    assert summary["rewards"]["memory"]["cases"]["empty"]["reward"]["mean"] == 0.0
    assert (out / "audit-memory.png").stat().st_size > 1000 and (out / "audit.txt").is_file()


@pytest.mark.parametrize("argv,message", [
    (["--preset", "memry"], "--preset='memry' is not a reward preset"),
    (["--cases", "oracle,fake"], "unknown audit case(s) ['fake']"),
    (["--checkpoint", "/nonexistent"], "--checkpoint /nonexistent: no such folder"),
    (["--reward-callable", "json"], "expected 'module:name'"),
])
def test_audit_command_refuses_bad_input_in_one_line(argv, message, capsys):
    code = main(["reward", "audit", "--config", "steps-2", "--episodes", "4", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
