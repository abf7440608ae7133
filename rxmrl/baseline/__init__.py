"""The stateless LLM baseline: a size-matched decoder-only model that re-reads the whole conversation.

    from rxmrl.baseline import build_stateless_model, history_prompt, train_baseline, StatelessAgent
    model = build_stateless_model(get_preset("nano", vocab_size=tokenizer.vocab_size))   # Llama, ~RxT size
    prompt = history_prompt(tokenizer, episode.all_interactions()[:j + 1], query)      # ... [Q] q [A]

Modules: ``model`` (size-matched Llama), ``data`` (history prompts, SFT dataset), ``train`` (TRL SFT),
``grpo`` (optional TRL GRPO with our reward), ``agent`` (the env agent), ``latency`` (per-turn cost,
stateless vs RxT). Names load lazily so that
``import rxmrl.baseline`` does not import transformers.
"""

from __future__ import annotations

from rxmrl.lazy import lazy_getattr

_EXPORTS = {
    "build_stateless_model": "rxmrl.baseline.model", "size_matched_config": "rxmrl.baseline.model",
    "size_report": "rxmrl.baseline.model", "rxt_target_parameters": "rxmrl.baseline.model",
    "SIZE_TOLERANCE": "rxmrl.baseline.model",
    "history_prompt": "rxmrl.baseline.data", "fit_history": "rxmrl.baseline.data",
    "episode_examples": "rxmrl.baseline.data", "history_dataset": "rxmrl.baseline.data",
    "HistoryPrompt": "rxmrl.baseline.data", "TruncationStats": "rxmrl.baseline.data",
    "BaselineConfig": "rxmrl.baseline.train", "train_baseline": "rxmrl.baseline.train",
    "load_baseline": "rxmrl.baseline.train", "completion_loss": "rxmrl.baseline.train",
    "StatelessAgent": "rxmrl.baseline.agent", "load_stateless_agent": "rxmrl.baseline.agent",
    "GRPORunConfig": "rxmrl.baseline.grpo", "train_baseline_grpo": "rxmrl.baseline.grpo",
    "measure_latency": "rxmrl.baseline.latency", "LatencyRow": "rxmrl.baseline.latency",
    "format_latency_table": "rxmrl.baseline.latency", "plot_latency": "rxmrl.baseline.latency",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
