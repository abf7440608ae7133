"""Running mean of the interactions already in memory, for the reward's running-mean cosine term.

MRL scores step ``i > 0`` against follow-up ``i-1`` (the saved data) and, through this running mean, the
interactions before it. Before scoring step ``i`` the mean is updated with the interaction written two
steps back (the first interaction for step 1, follow-up ``i-2`` afterwards)::

    m <- e(prev)                       on the first update of an episode
    m <- 0.8 * e(prev) + 0.2 * m       afterwards (0.8: the default new weight)

so step 0 has no running mean (the reward then uses its first-step cosine factors). Reset per episode.
Works on one episode (``[E]``) or a batch of episodes stepped together (``[B, E]``); long-range episodes
start their mean one step later (:mod:`rxmrl.envs.plan`), so a batch folds some rows only.
"""

from __future__ import annotations

import torch

DEFAULT_NEW_WEIGHT = 0.8  # weight of the newest interaction; a reward may ask for another (``running_mean_new_weight``)


class RunningMean:
    """Exponential running mean of interaction embeddings, ``m <- new_weight * e + (1 - new_weight) * m``.

    ``new_weight = 0`` keeps the first embedding for the whole episode (rxlm's ``running_mean_decay=1``).
    A batch of episodes (``[B, E]``) may fold only some rows (``rows``): a row's first fold sets its mean,
    and ``present`` says which rows have one.
    """

    def __init__(self, new_weight: float = DEFAULT_NEW_WEIGHT) -> None:
        if not 0.0 <= new_weight <= 1.0:
            raise ValueError(f"new_weight must lie in [0, 1], got {new_weight}")
        self.new_weight = new_weight
        self.value: torch.Tensor | None = None
        self.present: torch.Tensor | None = None  # [B] bool for a batch; None until the first update

    def reset(self) -> None:
        """Forget everything: call at the start of each episode."""
        self.value = self.present = None

    def update(self, embedding: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Fold in the embedding of the interaction written two steps back (``rows``: ``[B]`` bool, the
        rows of a batch to fold; default all); returns the new mean."""
        embedding = embedding.detach()
        if self.value is not None and embedding.shape != self.value.shape:
            raise ValueError(f"embedding shape {tuple(embedding.shape)} != running mean {tuple(self.value.shape)}")
        if rows is None:
            folded = embedding.clone() if self.value is None else (
                self.new_weight * embedding + (1 - self.new_weight) * self.value)
            self.value = folded
            if embedding.dim() == 2:
                self.present = torch.ones(embedding.shape[0], dtype=torch.bool, device=embedding.device)
            return self.value
        if embedding.dim() != 2 or rows.shape != (embedding.shape[0],):
            raise ValueError(f"rows {tuple(rows.shape)} must select rows of a [B, E] batch, got {tuple(embedding.shape)}")
        if self.value is None:
            self.value = torch.zeros_like(embedding)
            self.present = torch.zeros(embedding.shape[0], dtype=torch.bool, device=embedding.device)
        rows = rows.to(self.present.device)
        decayed = self.new_weight * embedding + (1 - self.new_weight) * self.value
        folded = torch.where(self.present.unsqueeze(1), decayed, embedding)  # a row's first fold: m <- e
        self.value = torch.where(rows.unsqueeze(1), folded, self.value)
        self.present = self.present | rows
        return self.value
