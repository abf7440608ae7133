"""Offline generator of TinyStories-MRL episodes, deterministic per seed.

Why a generator: the real curriculum lives on the Hugging Face hub, which tests and many users cannot
reach. This one writes the same schema, in TinyStories language, and adds what the real data lacks: the
*facts* each follow-up's reference answer depends on and which interaction stated them, so retention can
be scored exactly.

How an episode is built. A story is a chain of *scenes*; each scene's narrative states a few *details*
(a colour, a name, a place), each with a question that only memory can answer ("What colour was Lily's
ball?") and a restatement that answers it ("Lily's ball was red."). Follow-up ``j`` asks about a detail of
interaction ``j`` (the one just before it; interaction 0 is the saved one), sometimes also about an earlier
interaction, and its answer restates them and then tells the next scene, which the next follow-up asks
about -- the *cumulative* strategy. The *long-range* strategy saves a story about one child, tells an
unrelated story about another child for follow-ups ``0..N-2``, and asks the last follow-up about the first.
Words are drawn without replacement within an episode, so each fact names one thing; very long episodes
(beyond ~40 steps) that run out of new details ask an earlier detail again.

Splits never overlap: an episode belongs to the split picked by a hash of its saved interaction, and the
generator skips candidates whose hash points elsewhere (and duplicates within a split).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from rxmrl.data import world
from rxmrl.data.schema import Episode, Fact, Interaction, check_split, has_phrase, parse_config

GENERATOR_VERSION = "1"
"""Bump when the generated text changes, so caches keyed by it (the default tokenizer) refresh."""

DEFAULT_NUM_EPISODES: dict[str, int] = {"train": 2000, "validation": 250, "supervised": 4000}
SECOND_QUESTION_PROBABILITY = 0.3
"""How often a cumulative follow-up also asks about an interaction older than the previous one."""

_SPLIT_BUCKETS: dict[str, range] = {"validation": range(0, 1), "supervised": range(1, 3), "train": range(3, 10)}


def split_of(text: str) -> str:
    """The split a saved interaction (or story) belongs to: a stable hash into 10 buckets."""
    bucket = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big") % 10
    return next(split for split, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


@dataclass(frozen=True)
class Detail:
    """Something a scene states that a later follow-up can ask about."""

    question: str
    restatement: str
    fact: str


@dataclass(frozen=True)
class Scene:
    narrative: str
    details: tuple[Detail, ...]


class _Exhausted(Exception):
    """A word pool has no unused word left for this episode; the caller picks another kind of scene."""


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


class _Words:
    """Draws words without replacement within one episode, so every fact names one thing only."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def pick(self, pool: tuple[str, ...]) -> str:
        free = [word for word in pool if word not in self.used]
        if not free:
            raise _Exhausted
        word = self.rng.choice(free)
        self.used.add(word)
        return word


class Story:
    """One child's running story: the friends met so far and the questions already used."""

    def __init__(self, rng: random.Random, words: _Words) -> None:
        self.rng, self.words = rng, words
        self.girl = rng.random() < 0.5
        self.name = words.pick(world.GIRLS if self.girl else world.BOYS)
        self.she, self.her = ("she", "her") if self.girl else ("he", "his")
        self.obj = "her" if self.girl else "him"
        self.friends = [f"{self.her} {words.pick(world.HELPERS)}"]
        self.questions: set[str] = set()

    # The first interaction: who the child is, their toy and their home.
    def intro(self) -> tuple[str, Scene]:
        n, w = self.name, self.words
        kid = "girl" if self.girl else "boy"
        toy, colour, place = w.pick(world.TOYS), w.pick(world.COLOURS), w.pick(world.PLACES)
        query = self.rng.choice((
            f"Tell me a story about {n}.",
            f"Can you tell me a story about a {kid} named {n}?",
            f"Please tell me a story about {n} and {self.her} {toy}.",
            f"Write a short story about a little {kid} called {n}.",
        ))
        sentences = [
            f"Once upon a time, there was a little {kid} named {n}.",
            f"{n} lived in {_a(self.rng.choice(world.HOUSES))} house near the {place}.",
            f"{_cap(self.she)} had {_a(colour)} {toy} and {self.she} loved it very much.",
        ]
        details = [
            Detail(f"What colour was {n}'s {toy}?", f"{n}'s {toy} was {colour}.", colour),
            Detail(f"Where was {n}'s house?", f"{n}'s house was near the {place}.", place),
        ]
        if self.rng.random() < 0.5:
            animal, pet = w.pick(world.ANIMALS), w.pick(world.PET_NAMES)
            sentences.append(f"{_cap(self.she)} also had a pet {animal} named {pet}.")
            details.append(Detail(f"What was the name of {n}'s pet {animal}?",
                                  f"{n}'s pet {animal} was named {pet}.", pet))
            self.friends.append(pet)
        return query, self._scene(sentences, details)

    def next_scene(self) -> Scene:
        """A new scene whose questions were never asked in this story (tries other kinds if needed)."""
        kinds = list(self._SCENES)
        self.rng.shuffle(kinds)
        for kind in kinds:
            try:
                scene = kind(self)
            except _Exhausted:
                continue
            if not any(d.question in self.questions for d in scene.details):
                self.questions.update(d.question for d in scene.details)
                return scene
        # Every pool is spent (very long episodes): a detail-free scene keeps the story going.
        return Scene(f"{self.name} smiled and looked at the sky.", ())

    def _scene(self, sentences: list[str], details: list[Detail]) -> Scene:
        return Scene(" ".join(sentences), tuple(details))

    def _friend(self) -> str:
        return self.rng.choice(self.friends)

    def _meet_animal(self) -> Scene:
        n, w = self.name, self.words
        place, animal, pet = w.pick(world.PLACES), w.pick(world.ANIMALS), w.pick(world.PET_NAMES)
        self.friends.append(pet)
        return self._scene(
            [f"One day, {n} went to the {place}.",
             f"There {self.she} met a {self.rng.choice(world.ANIMAL_ADJECTIVES)} {animal} named {pet}."],
            [Detail(f"What was the name of the {animal} that {n} met?", f"The {animal} was named {pet}.", pet),
             Detail(f"Where did {n} meet {pet}?", f"{n} met {pet} at the {place}.", place)])

    def _find_thing(self) -> Scene:
        n, w = self.name, self.words
        thing, colour, spot = w.pick(world.FOUND_THINGS), w.pick(world.COLOURS), w.pick(world.SPOTS)
        return self._scene(
            [f"Then {n} found {_a(colour)} {thing} under the {spot}."],
            [Detail(f"What colour was the {thing} that {n} found?", f"The {thing} was {colour}.", colour),
             Detail(f"Where did {n} find the {thing}?", f"{_cap(self.she)} found the {thing} under the {spot}.",
                    spot)])

    def _with_friend(self, pool: Sequence[str], sentence: str, question: str, answer: str) -> Scene:
        """A one-detail scene of the child, a friend and one word drawn from ``pool``, drawn before the friend
        (the generator's output depends on the order of its draws). The templates fill ``{n}`` (the child),
        ``{friend}``, ``{word}`` and ``{a_word}`` (the word with its article)."""
        word = self.words.pick(pool)
        fill = {"n": self.name, "friend": self._friend(), "word": word, "a_word": _a(word)}
        return self._scene([sentence.format(**fill)],
                           [Detail(question.format(**fill), answer.format(**fill), word)])

    def _share_food(self) -> Scene:
        return self._with_friend(world.FOODS, "Later, {n} and {friend} shared {a_word} for a snack.",
                                 "What snack did {n} share with {friend}?", "{n} shared {a_word} with {friend}.")

    def _play_game(self) -> Scene:
        return self._with_friend(world.GAMES, "{n} and {friend} played {word} until the sun went down.",
                                 "What game did {n} play with {friend}?", "{n} and {friend} played {word}.")

    def _gift(self) -> Scene:
        n, w = self.name, self.words
        helper, toy, colour = w.pick(world.HELPERS), w.pick(world.TOYS), w.pick(world.COLOURS)
        self.friends.append(f"{self.her} {helper}")
        return self._scene(
            [f"{_cap(self.her)} {helper} gave {self.obj} {_a(colour)} {toy} as a present."],
            [Detail(f"What did {n}'s {helper} give {self.obj}?", f"{n}'s {helper} gave {self.obj} {_a(toy)}.", toy),
             Detail(f"What colour was the {toy} from {n}'s {helper}?", f"The {toy} was {colour}.", colour)])

    def _weather(self) -> Scene:
        n, weather, feeling = self.name, self.words.pick(world.WEATHER), self.words.pick(world.FEELINGS)
        return self._scene(
            [f"Suddenly it started to {weather}, and {n} felt {feeling}."],
            [Detail(f"How did {n} feel when it started to {weather}?", f"{_cap(self.she)} felt {feeling}.",
                    feeling)])

    def _walk(self) -> Scene:
        return self._with_friend(world.PLACES, "After that, {n} walked with {friend} to the {word}.",
                                 "Where did {n} walk with {friend}?", "They walked to the {word}.")

    def _help_friend(self) -> Scene:
        n, w, friend = self.name, self.words, self._friend()
        item, spot = w.pick(world.FOUND_THINGS), w.pick(world.SPOTS)
        return self._scene(
            [f"{_cap(friend)} lost {_a(item)}, so {n} looked everywhere and found it near the {spot}."],
            [Detail(f"What did {friend} lose?", f"{_cap(friend)} lost {_a(item)}.", item),
             Detail(f"Where did {n} find the {item} that {friend} lost?", f"{n} found it near the {spot}.", spot)])

    def _sing(self) -> Scene:
        return self._with_friend(world.SONGS, "In the evening, {n} sang {word} to {friend}.",
                                 "What did {n} sing to {friend}?", "{n} sang {word}.")

    _SCENES: tuple[Callable[[Story], Scene], ...] = (
        _meet_animal, _find_thing, _share_food, _play_game, _gift, _weather, _walk, _help_friend, _sing,
    )


class _EpisodeBuilder:
    """Accumulates interactions and the details each one stated, then emits an :class:`Episode`."""

    def __init__(self, rng: random.Random, query: str, intro: Scene) -> None:
        self.rng = rng
        self.query, self.answer = query, intro.narrative
        self.follow_ups: list[Interaction] = []
        self.facts: list[list[Fact]] = []
        self.unasked: list[list[Detail]] = [list(intro.details)]  # per interaction index
        self.stated: list[list[Detail]] = [list(intro.details)]  # every detail, asked or not

    def ask(self, asked: list[tuple[int, Detail]], scene: Scene | None, prefix: str = "") -> None:
        """Adds a follow-up asking ``asked`` (interaction index, detail); its answer tells ``scene`` next."""
        questions = [asked[0][1].question] + [d.question[0].lower() + d.question[1:] for _, d in asked[1:]]
        query = prefix + " And ".join(questions)
        answer = " ".join([d.restatement for _, d in asked] + ([scene.narrative] if scene else []))
        for source, detail in asked:
            if detail in self.unasked[source]:
                self.unasked[source].remove(detail)
        self.follow_ups.append(Interaction(query, answer))
        self.facts.append([Fact(d.fact, source) for source, d in asked])
        self.unasked.append(list(scene.details) if scene else [])
        self.stated.append(list(scene.details) if scene else [])

    def tell(self, query: str, scene: Scene) -> None:
        """A follow-up that asks nothing from memory (the long-range topic switch)."""
        self.follow_ups.append(Interaction(query, scene.narrative))
        self.facts.append([])
        self.unasked.append(list(scene.details))
        self.stated.append(list(scene.details))

    def questions_about(self, newest: int, oldest: int = 0) -> list[tuple[int, Detail]]:
        """A detail of interaction ``newest`` and, sometimes, one of an interaction in ``oldest..newest-1``."""
        asked = [(newest, self.rng.choice(self.unasked[newest]))] if self.unasked[newest] else []
        if asked and self.rng.random() >= SECOND_QUESTION_PROBABILITY:
            return asked
        earlier = [(k, d) for k in range(oldest, newest) for d in self.unasked[k]
                   if not any(_gives_away(d, other) for _, other in asked)]
        if earlier:
            asked.append(self.rng.choice(earlier))
        if not asked:  # very long episodes can run out of new details: ask an old one again
            asked = [self.rng.choice([(k, d) for k in range(oldest, newest + 1) for d in self.stated[k]])]
        return asked

    def episode(self, strategy: str) -> Episode:
        return Episode(self.query, self.answer, self.follow_ups, self.facts, strategy)


def _gives_away(detail: Detail, other: Detail) -> bool:
    """Two questions asked together must not answer each other ("What did Tiny lose?" + "Who was Tiny?")."""
    return has_phrase(other.question, detail.fact) or has_phrase(detail.question, other.fact)


def _cumulative(rng: random.Random, story: Story, query: str, intro: Scene, steps: int) -> Episode:
    builder = _EpisodeBuilder(rng, query, intro)
    for j in range(steps):
        builder.ask(builder.questions_about(j), story.next_scene())
    return builder.episode("cumulative")


def _long_range(rng: random.Random, first: Story, query: str, intro: Scene, steps: int) -> Episode:
    builder = _EpisodeBuilder(rng, query, intro)
    if steps > 1:
        other = Story(rng, first.words)
        other_query, other_intro = other.intro()
        builder.tell(rng.choice(("Now something different. ", "Let's hear a new story. ", "")) + other_query,
                     other_intro)
        for j in range(1, steps - 1):
            builder.ask(builder.questions_about(j, oldest=1), other.next_scene())
    first_details = list(builder.unasked[0])
    asked = [(0, d) for d in rng.sample(first_details, k=min(len(first_details), rng.choice((1, 2))))]
    if len(asked) == 2 and _gives_away(asked[0][1], asked[1][1]):
        asked = asked[:1]
    builder.ask(asked, None, prefix=f"Think back to the story about {first.name}. ")
    return builder.episode("long_range")


def _candidates(seed: int, stream: str) -> Iterator[random.Random]:
    """Independent RNGs for candidate 0, 1, 2, ... of one stream (string seeds hash with SHA-512)."""
    index = 0
    while True:
        yield random.Random(f"rxmrl-storygen/{GENERATOR_VERSION}/{seed}/{stream}/{index}")
        index += 1


def generate_episodes(config: str, split: str = "train", num_episodes: int | None = None,
                      seed: int = 0) -> list[Episode]:
    """``num_episodes`` distinct episodes of ``config`` ("steps-N" or "steps-N-lr") in ``split``.

    Deterministic per (config, split, seed); a shorter request is a prefix of a longer one.
    """
    steps, long_range = parse_config(config)
    check_split(split)
    count = DEFAULT_NUM_EPISODES[split] if num_episodes is None else num_episodes
    build = _long_range if long_range else _cumulative
    episodes: list[Episode] = []
    seen: set[str] = set()
    for rng in _candidates(seed, config):
        if len(episodes) >= count:
            break
        story = Story(rng, _Words(rng))
        query, intro = story.intro()
        key = f"{query}\n{intro.narrative}"
        if split_of(key) != split or key in seen:
            continue
        seen.add(key)
        episodes.append(build(rng, story, query, intro, steps))
    return episodes


def generate_interactions(split: str = "train", num_interactions: int = 10_000, seed: int = 0) -> list[Interaction]:
    """Single interactions (query, answer) for interaction SFT, drawn from episodes of mixed length."""
    interactions: list[Interaction] = []
    for config in ("steps-4", "steps-8", "steps-4-lr"):
        for episode in generate_episodes(config, split, num_interactions // 6 + 1, seed):
            interactions.extend(episode.all_interactions())
    random.Random(f"interactions/{seed}/{split}").shuffle(interactions)
    return interactions[:num_interactions]


def generate_stories(split: str = "train", num_stories: int = 5_000, seed: int = 0) -> list[str]:
    """Plain stories (one child, several scenes) for language-model pre-training."""
    stories: list[str] = []
    seen: set[str] = set()
    for rng in _candidates(seed, "stories"):
        if len(stories) >= num_stories:
            break
        story = Story(rng, _Words(rng))
        _, intro = story.intro()
        scenes = [story.next_scene().narrative for _ in range(rng.randint(2, 7))]
        ending = rng.choice(("The end.", f"That night, {story.name} went to bed with a big smile.",
                             f"It was the best day ever for {story.name}."))
        text = " ".join([intro.narrative, *scenes, ending])
        if split_of(intro.narrative) != split or text in seen:
            continue
        seen.add(text)
        stories.append(text)
    return stories
