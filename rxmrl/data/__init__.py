"""Curriculum data: schema, sources, and the offline TinyStories-MRL generator.

    from rxmrl.data import load_curriculum
    train = load_curriculum("embedded", steps=8, split="train")      # or a folder, file or hub id
    episode = train[0]            # Episode(query, answer, interactions, facts, strategy)
"""

from rxmrl.data.curriculum import (
    EMBEDDED, HUB_CURRICULUM, HUB_INTERACTIONS, HUB_STORIES, CurriculumSplit, TruncationReport,
    load_curriculum, load_interactions, load_stories, truncation_report, write_episodes,
)
from rxmrl.data.embedded_tokenizer import default_tokenizer, embedded_corpus
from rxmrl.data.schema import (
    EMBEDDED_CONFIGS, PUBLISHED_CONFIGS, SPLITS, CurriculumValidationError, Episode, Fact, Interaction,
    config_name, parse_config, validate_row, validate_rows,
)
from rxmrl.data.storygen import GENERATOR_VERSION, generate_episodes, generate_interactions, generate_stories

__all__ = [
    "EMBEDDED", "EMBEDDED_CONFIGS", "GENERATOR_VERSION", "HUB_CURRICULUM", "HUB_INTERACTIONS", "HUB_STORIES",
    "PUBLISHED_CONFIGS", "SPLITS", "CurriculumSplit", "CurriculumValidationError", "Episode", "Fact",
    "Interaction", "TruncationReport", "config_name", "default_tokenizer", "embedded_corpus", "generate_episodes",
    "generate_interactions", "generate_stories", "load_curriculum", "load_interactions", "load_stories", "parse_config",
    "truncation_report", "validate_row", "validate_rows", "write_episodes",
]
