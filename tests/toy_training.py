"""A toy model and data set for the shared-loop tests: small, fast, and with every feature the loop
must handle (an embedding, norms and biases, dropout drawing from the RNG, a fake MoE aux loss)."""

from __future__ import annotations

import torch
from torch import nn

from rxmrl.training.data_order import BatchOrder, ResumableBatches
from rxmrl.training.optim import prefix_groups

VOCAB, DIM, SEQ, CLASSES = 16, 16, 6, 4
GROUP_OF = prefix_groups({"embedding": ["embedding."], "encoder": ["encoder."], "head": ["head."]})


class ToyMoEClassifier(nn.Module):
    """Embedding -> mean pool -> 2 experts mixed by a router -> norm -> head; aux = load-balance loss."""

    def __init__(self, dropout: float = 0.1) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM)
        self.encoder = nn.ModuleDict({
            "router": nn.Linear(DIM, 2),
            "experts": nn.ModuleList([nn.Linear(DIM, DIM) for _ in range(2)]),
            "norm": nn.LayerNorm(DIM),
        })
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(DIM, CLASSES)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.embedding(tokens).mean(dim=1)  # (B, D)
        gates = self.encoder["router"](hidden).softmax(dim=-1)  # (B, 2)
        mixed = sum(gates[:, i:i + 1] * expert(hidden) for i, expert in enumerate(self.encoder["experts"]))
        hidden = self.encoder["norm"](hidden + self.dropout(torch.relu(mixed)))
        load = gates.mean(dim=0)  # (2,) fraction routed to each expert
        aux = 2 * (load * load).sum()  # 1 when balanced, larger when not
        return self.head(hidden), aux


def toy_dataset(n: int = 64, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Label = (number of tokens below VOCAB/2) // 2, in 0..3: linear in the mean-pooled embedding."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (n, SEQ), generator=generator)
    return [{"tokens": t, "label": torch.clamp((t < VOCAB // 2).sum() // 2, max=CLASSES - 1)} for t in tokens]


def toy_batches(batch_size: int = 8, seed: int = 0, rank: int = 0, world_size: int = 1, n: int = 64):
    data = toy_dataset(n)
    return ResumableBatches(data, BatchOrder(len(data), batch_size, seed=seed, rank=rank, world_size=world_size))


def toy_step(model: nn.Module, batch: dict[str, torch.Tensor]):
    logits, aux = model(batch["tokens"])
    task = nn.functional.cross_entropy(logits, batch["label"])
    return task + 0.01 * aux, {"task_loss": task.detach(), "aux_loss": aux.detach()}


def toy_task_step(model: nn.Module, batch: dict[str, torch.Tensor]):
    """Cross-entropy only: a mean over examples, so splitting a batch (accumulation, DDP) averages exactly.
    (The MoE aux loss is a non-linear function of the batch's routing mean, so it is left out here.)"""
    logits, aux = model(batch["tokens"])
    return nn.functional.cross_entropy(logits, batch["label"]), {"aux_loss": aux.detach()}
