"""The Reactive Transformer: embedding, generator-decoder, memory encoder, memory attention, STM.

STM layout everywhere: ``[B, L, S, D]`` (batch, layers, slots, dim).

Usage::

    model = ReactiveTransformer(get_preset("nano", vocab_size=tokenizer_vocab_size))
    stm = model.initial_stm(batch_size=8)                        # one STM row per conversation
    sampling = SamplingConfig(temperature=0.8, top_p=0.9)
    out = model.generate(queries, stm, max_new_tokens=64, sampling=sampling)  # [BOS][Q] q ids
    scored = model.score(queries, out.tokens, stm, answer_mask=out.mask, sampling=sampling)
    # scored.log_probs == out.log_probs (same processed distribution), and it is differentiable
    stm = model.update_memory(stm, queries, out.answers())       # encoder + memory attention

    model.reset_stm(1)                                           # single conversation held by the model
    for token in model.interact(query_ids): ...                  # answer ids, then -1, then -2
"""

from rxmrl.model.config import PRESETS, RxTConfig, get_preset
from rxmrl.model.decoder import Decoder, DecoderCache
from rxmrl.model.encoder import Encoder
from rxmrl.model.interaction import (answer_prompt, answer_tokens, interaction_ids, pad_batch, query_tokens,
                                     written_interaction)
from rxmrl.model.memory import MemoryAttention, ResidualGate, ShortTermMemory
from rxmrl.model.params import PUBLISHED, count_parameters
from rxmrl.model.rxt import (
    MEMORY_UPDATE_STARTED,
    MEMORY_UPDATED,
    GenerationOutput,
    ReactiveTransformer,
    ScoreOutput,
)
from rxmrl.model.sampling import (
    GREEDY,
    SamplingConfig,
    entropy,
    head_token_scores,
    processed_log_probs,
    safe_entropy,
    sample,
    token_log_probs,
    token_scores,
)
from rxmrl.model.sizes import count_preset, parameter_table

__all__ = [
    "GREEDY", "MEMORY_UPDATED", "MEMORY_UPDATE_STARTED", "PRESETS", "PUBLISHED", "Decoder",
    "DecoderCache", "Encoder", "GenerationOutput", "MemoryAttention", "ReactiveTransformer",
    "ResidualGate", "RxTConfig", "SamplingConfig", "ScoreOutput", "ShortTermMemory", "answer_prompt",
    "answer_tokens", "count_parameters", "count_preset", "entropy", "get_preset", "head_token_scores",
    "interaction_ids", "pad_batch", "parameter_table", "processed_log_probs", "query_tokens", "safe_entropy",
    "sample", "token_log_probs", "token_scores", "written_interaction",
]
