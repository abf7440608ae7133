"""Memory tokens: the words of a reference answer only memory can supply, and the ``memory`` preset built on them."""

import math

import pytest
import torch

from env_helpers import hand_made_episode
from rxmrl.data import Episode, Fact, Interaction, default_tokenizer
from rxmrl.envs.scoring import build_reward
from rxmrl.rewards import (
    MemoryRetentionReward, MemoryTarget, RewardConfig, WordStatistics, as_trl_reward, content_words,
    episode_memory_targets, memory_score, memory_target,
)


@pytest.fixture(scope="module")
def tokenizer():
    return default_tokenizer()


def story() -> Episode:
    return Episode(
        "Tell me about Tom.", "Tom had a red kite and a blue ball. Tom felt happy.",
        [Interaction("What colour was Tom's kite?", "The kite was red. Then Tom went to the park."),
         Interaction("Where did Tom go?", "Tom went to the park. He felt happy."),
         Interaction("What colour was Tom's ball?", "Tom's ball was blue.")],
        [[Fact("red", 0)], [Fact("park", 1)], [Fact("blue", 0)]],
    )


def test_content_words_lowercase_drop_possessives_and_stop_words():
    assert content_words("Rose's house was near THE field, and she didn't cry.") == {
        "rose", "house", "near", "field", "cry"}
    assert content_words("") == frozenset()


def test_targets_are_reference_words_the_history_holds_and_the_query_does_not():
    targets = episode_memory_targets(story())
    assert [t.targets for t in targets] == [{"red"}, {"park", "felt", "happy"}, {"blue"}]
    assert "tom" not in targets[0].history and {"kite", "park"} <= targets[2].history
    assert "ball" not in targets[2].history  # the query names it


def test_template_words_of_the_corpus_are_no_memory():
    episode = story()
    statistics = WordStatistics.from_episodes([episode, episode])
    assert statistics.frequency("tom") == 1.0 and statistics.frequency("felt") == 0.5
    assert statistics.template_words(0.6) == {"tom"}  # in all 8 interactions; every other word is in 4
    assert len(statistics.template_words(0.4)) == 9
    assert WordStatistics.from_episodes([episode]).template_words(0.4) == frozenset()  # one conversation's own
    targets = episode_memory_targets(episode, template_words=frozenset({"felt", "happy"}))
    assert [t.targets for t in targets] == [{"red"}, {"park"}, {"blue"}]


def test_recall_precision_and_f_beta_of_known_answers():
    target = MemoryTarget(frozenset({"silver", "ball"}), frozenset({"silver", "ball", "drum", "black", "field"}))
    right = memory_score("The ball was silver.", target)
    assert (right.recall, right.precision, right.f_beta) == (1.0, 1.0, 1.0)
    half = memory_score("It was silver, like the drum.", target)  # claims drum, which is not asked for
    assert half.recall == 0.5 and half.precision == 0.5 and half.f_beta == pytest.approx(0.5)
    dump = memory_score("silver ball drum black field", target)
    assert dump.recall == 1.0 and dump.precision == pytest.approx(0.4)
    assert dump.f_beta == pytest.approx(2 * 0.4 / 1.4)
    assert memory_score("silver ball drum black field", target, beta=2).f_beta > dump.f_beta  # recall weighs more
    assert memory_score("No idea.", target).f_beta == 0.0
    assert all(math.isnan(v) for v in memory_score("x", MemoryTarget(frozenset(), frozenset())))


def memory_reward(tokenizer) -> MemoryRetentionReward:
    return build_reward("memory", "random-embedding", tokenizer)


def test_memory_preset_pays_for_the_remembered_part_not_the_fluency(tokenizer):
    episode = story()
    reward = memory_reward(tokenizer)
    corpus = WordStatistics([["He felt happy."]] * 9 + [["Tom saw a red kite in the park."]])  # felt, happy: templates
    targets = reward.memory_targets(episode, statistics=corpus)
    assert [t.targets for t in targets] == [{"red"}, {"park"}, {"blue"}]
    references = [i.answer for i in episode.interactions]
    wrong = ["The kite was green. Then Tom went to the park.", "Tom went to the zoo. He felt happy.",
             "Tom's ball was pink."]
    blunt = ["Red.", "The park.", "Blue."]
    saved = [f"{episode.query} {episode.answer}"] * 3
    oracle = reward.score_texts(references, references, saved, memory_targets=targets)
    fluent_wrong = reward.score_texts(wrong, references, saved, memory_targets=targets)
    short_right = reward.score_texts(blunt, references, saved, memory_targets=targets)
    assert torch.allclose(oracle.reward, torch.full((3,), 10.0))
    assert bool((fluent_wrong.reward < short_right.reward).all())  # a fluent wrong answer never outscores a right one
    assert bool((oracle.reward - fluent_wrong.reward >= 3.0).all())
    assert fluent_wrong.components["memory_recall"].tolist() == [0.0, 0.0, 0.0]
    assert short_right.components["memory"].tolist() == [1.0, 1.0, 1.0]


def test_rows_without_memory_tokens_and_negative_mode_renormalise_the_other_terms(tokenizer):
    reward = memory_reward(tokenizer)
    plain = MemoryRetentionReward(RewardConfig.preset("memory", memory_weight=0.0, length_weight=0.1 / 0.4,
                                                      bleu_weight=0.15 / 0.4, cosine_weight=0.15 / 0.4),
                                  reward.similarity, decode=tokenizer.decode, tokenize=tokenizer.encode)
    answers, references, saved = ["The cat sat."] * 3, ["The kite was red."] * 3, ["Tom had a red kite."] * 3
    target = MemoryTarget(frozenset({"red"}), frozenset({"red", "kite", "tom"}))
    empty = MemoryTarget(frozenset(), frozenset({"kite"}))
    out = reward.score_texts(answers, references, saved, modes=["standard", "negative", "standard"],
                             memory_targets=[target, target, empty])
    expected = plain.score_texts(answers, references, saved).reward
    torch.testing.assert_close(out.reward[1:], expected[1:])  # negative row and empty target: left out
    assert out.reward[0] == pytest.approx(0.4 * expected[0].item())  # memory term 0 where it is paid
    assert math.isnan(out.components["memory"][1]) and math.isnan(out.components["memory"][2])
    assert out.means()["memory"] == 0.0  # means skip the rows without a memory term


def test_memory_preset_without_targets_says_what_it_needs(tokenizer):
    with pytest.raises(ValueError, match="memory_targets="):
        memory_reward(tokenizer).score_texts(["a"], ["b"], ["c"])


def test_id_and_text_scoring_agree_on_the_memory_term(tokenizer):
    episode = hand_made_episode(2)
    reward = memory_reward(tokenizer)
    targets = reward.memory_targets(episode)
    answers = ["The kite was red.", "It was blue."]
    by_text = reward.score_texts(answers, [i.answer for i in episode.interactions], ["x", "x"],
                                 memory_targets=targets)
    ids = [tokenizer.encode_answer(a) for a in answers]
    by_ids = reward.score_ids(ids, [tokenizer.encode_answer(i.answer) for i in episode.interactions],
                              [tokenizer.encode("x")] * 2, memory_targets=targets)
    torch.testing.assert_close(by_ids.components["memory"], by_text.components["memory"])
    assert by_ids.components["memory"].tolist() == [1.0, 0.0]


def test_trl_adapter_builds_memory_targets_from_query_and_history_columns(tokenizer):
    episode = story()
    reward = as_trl_reward(memory_reward(tokenizer))
    history = [[f"{i.query} {i.answer}" for i in episode.all_interactions()[: j + 1]] for j in range(3)]
    columns = dict(reference=[i.answer for i in episode.interactions], saved=["x"] * 3, mode=["standard"] * 3,
                   query=[i.query for i in episode.interactions], history=history)
    scores = reward(prompts=["p"] * 3, completions=["Red.", "The zoo.", "Blue."], **columns)
    direct = memory_target(episode.interactions[2].answer, episode.interactions[2].query, history[2])
    assert direct.targets == {"blue"}
    assert scores[0] > scores[1] < scores[2]
    with pytest.raises(KeyError, match="history"):
        reward(prompts=["p"], completions=["Red."], reference=["r"], saved=["s"], query=["q"])
