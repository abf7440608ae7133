"""The model card (``README.md``) that ``save_pretrained`` writes beside the weights.

huggingface_hub's ``ModelHubMixin`` renders it from :data:`MODEL_CARD_TEMPLATE` (Jinja) with the values of
:func:`card_values`: the architecture, the parameter counts, where the weights came from (training run or
conversion), and an evaluation table when the caller has one. ``push_to_hub`` uploads the same folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MODEL_CARD_TEMPLATE = """---
{{ card_data }}
---

# Reactive Transformer (rxmrl)

An event-driven Reactive Transformer: the decoder answers each query from a fixed-size Short-Term Memory, and
the encoder and memory attention write the finished interaction into that memory.

## Architecture

| field | value |
| --- | --- |
{% for key, value in architecture %}| {{ key }} | {{ value }} |
{% endfor %}
## Parameters

| component | parameters |
| --- | --- |
{% for key, value in parameters %}| {{ key }} | {{ value }} |
{% endfor %}
## Provenance

{% if provenance %}{% for key, value in provenance %}- {{ key }}: {{ value }}
{% endfor %}{% else %}Not recorded with this save.
{% endif %}
## Evaluation

{% if evaluation %}| {{ evaluation[0].keys() | join(" | ") }} |
|{% for _ in evaluation[0] %} --- |{% endfor %}
{% for row in evaluation %}| {{ row.values() | join(" | ") }} |
{% endfor %}{% else %}No evaluation recorded with this save (`rxmrl eval --agent DIR` measures one).
{% endif %}
## Usage

```python
from rxmrl.model import ReactiveTransformer, MEMORY_UPDATE_STARTED, MEMORY_UPDATED
from rxmrl.tokenizer import RxTokenizer

model = ReactiveTransformer.from_pretrained("{{ name }}").eval()
tokenizer = RxTokenizer.load("{{ name }}")
model.init_stm_state(tokenizer.encode_query("system prompt"), tokenizer.encode("its answer"))
for token in model.interact(tokenizer.encode_query("Hello!"), max_new_tokens=64):
    if token not in (MEMORY_UPDATE_STARTED, MEMORY_UPDATED):
        print(tokenizer.decode([token]), end="")
```

The Reactive Transformer architecture and Memory Reinforcement Learning are the work of Reactive AI (patent
pending; commercial use is subject to their licence).
"""

ARCHITECTURE_FIELDS = ("vocab_size", "dim", "num_layers", "num_heads", "query_heads", "kv_heads",
                       "decoder_ff", "num_experts", "experts_per_token", "expert_dim", "shared_experts",
                       "encoder_ff_dim", "stm_slots", "memory_attention", "memory_attention_stages",
                       "residual_gate", "gate_activation", "slot_identity", "decoder_only", "interaction_write")


def _rows(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in values.items()]


def card_values(model: Any, name: str = "MODEL_DIR", provenance: Mapping[str, Any] | None = None,
                evaluation: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The template's values for ``model`` (a ReactiveTransformer); ``evaluation``: rows of one table."""
    from rxmrl.model.params import count_parameters

    config = model.config.to_dict()
    counts = {key: f"{value / 1e6:.2f}M" for key, value in count_parameters(model).items()}
    return {
        "name": name,
        "architecture": _rows({key: config[key] for key in ARCHITECTURE_FIELDS}),
        "parameters": _rows(counts),
        "provenance": _rows(provenance or {}),
        "evaluation": [dict(row) for row in evaluation or []],
    }
