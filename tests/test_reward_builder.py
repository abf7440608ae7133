"""The one reward builder (``rxmrl.envs.scoring.build_reward``): every choice named, the embedding from a policy."""

from __future__ import annotations

import pytest
import torch

from rxmrl.envs.agents import RxTAgent
from rxmrl.envs.scoring import build_reward
from rxmrl.model import ReactiveTransformer, RxTConfig


def tiny_model(vocab: int) -> ReactiveTransformer:
    torch.manual_seed(0)
    return ReactiveTransformer(RxTConfig(vocab_size=vocab, dim=32, num_layers=1, num_heads=2, query_heads=1,
                                         kv_heads=1, num_experts=2, experts_per_token=1, expert_dim=32,
                                         encoder_ff_dim=32, stm_slots=8))


def test_policy_embedding_is_a_frozen_copy_of_the_table_of_a_model_an_agent_or_the_matrix(tokenizer):
    model = tiny_model(tokenizer.vocab_size)
    tables = [build_reward("default", "policy-embedding", tokenizer, policy=policy).similarity.weight
              for policy in (model, RxTAgent(model, tokenizer), model.embedding, model.embedding.weight)]
    for table in tables:
        assert torch.equal(table, model.embedding.weight.detach())
    with torch.no_grad():
        model.embedding.weight.add_(1.0)  # training the policy never moves its reward
    assert not torch.equal(tables[0], model.embedding.weight)


def test_policy_embedding_without_a_policy_or_with_a_modelless_agent_is_refused_by_name(tokenizer):
    from rxmrl.envs.agents import OracleAgent

    with pytest.raises(ValueError, match=r"policy-embedding' needs the model whose embedding it copies \(policy=\)"):
        build_reward("default", "policy-embedding", tokenizer)
    with pytest.raises(ValueError, match="needs a model with token embeddings; 'oracle' has none"):
        build_reward("default", "policy-embedding", tokenizer, policy=OracleAgent(tokenizer))
