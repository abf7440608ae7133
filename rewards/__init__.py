"""Memory-retention rewards for MRL (installed as ``rxmrl.rewards``).

Small exact callables -- token-id BLEU equal to NLTK's, embedding similarity backends, a length term, fact
recall, memory-token recall -- and the composite ``MemoryRetentionReward`` (0-10, components by name) built
from them, the reference framework's reward ``RxlmReward`` (preset ``rxlm``), ``preset_reward`` (a preset
name -> its reward), plus an adapter to TRL's reward-function signature. Importing this package loads no
model: the sentence encoder is loaded on first use, once per process.
"""

from rxmrl.rewards.bleu import SMOOTHING_METHODS, token_bleu
from rxmrl.rewards.facts import fact_recall, held_fact_recall, mix_fact_recall
from rxmrl.rewards.id_reward import RewardOutput
from rxmrl.rewards.ids import as_padded, pad_id_lists, strip_ids
from rxmrl.rewards.length import length_score
from rxmrl.rewards.memory_tokens import (
    MemoryScore,
    MemoryTarget,
    WordStatistics,
    content_word_sequence,
    content_words,
    episode_memory_targets,
    memory_score,
    memory_target,
)
from rxmrl.rewards.presets import check_preset, preset_reward
from rxmrl.rewards.retention import MODES, PRESETS, MemoryRetentionReward, RewardConfig
from rxmrl.rewards.running_mean import DEFAULT_NEW_WEIGHT, RunningMean
from rxmrl.rewards.rxlm import RXLM_PRESET, RxlmReward, RxlmRewardConfig
from rxmrl.rewards.similarity import (
    SentenceEncoderSimilarity,
    SimilarityBackend,
    TokenEmbeddingSimilarity,
    cosine,
    default_encoder_path,
    load_sentence_encoder,
)
from rxmrl.rewards.trl import as_trl_fact_recall, as_trl_reward, completion_text

__all__ = [
    "DEFAULT_NEW_WEIGHT",
    "MODES",
    "MemoryScore",
    "MemoryTarget",
    "WordStatistics",
    "content_word_sequence",
    "content_words",
    "episode_memory_targets",
    "memory_score",
    "memory_target",
    "PRESETS",
    "SMOOTHING_METHODS",
    "MemoryRetentionReward",
    "RewardConfig",
    "RewardOutput",
    "RunningMean",
    "RXLM_PRESET",
    "RxlmReward",
    "RxlmRewardConfig",
    "SentenceEncoderSimilarity",
    "SimilarityBackend",
    "TokenEmbeddingSimilarity",
    "as_padded",
    "check_preset",
    "as_trl_fact_recall",
    "as_trl_reward",
    "completion_text",
    "cosine",
    "default_encoder_path",
    "fact_recall",
    "mix_fact_recall",
    "length_score",
    "load_sentence_encoder",
    "pad_id_lists",
    "preset_reward",
    "strip_ids",
    "token_bleu",
]
