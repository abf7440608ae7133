"""Does memory matter? Follow-up answer loss with the accumulated STM versus a freshly reset one.

For validation episodes ``I_0 .. I_N`` the decoder is scored (teacher forcing) on the answer tokens and
``[EOS]`` of every follow-up ``I_t`` twice:

* **with memory** -- reading ``STM_t``, into which ``I_0 .. I_{t-1}`` were written one by one;
* **reset memory** -- reading a fresh initial STM, as at the start of a conversation.

Follow-up answers of the curriculum repeat facts from earlier interactions ("What colour was Lily's
ball?" -> "... blue ..."), which a decoder can only get right from memory. So
``loss_reset_memory − loss_with_memory`` (and the accuracy gap) measures how much the memory system carries.
Both passes use the same fresh STM draws (a seeded generator), so the numbers are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from rxmrl.data.schema import Episode
from rxmrl.model import ReactiveTransformer
from rxmrl.tokenizer import RxTokenizer
from rxmrl.training.stages.batching import episode_rows, pad_episodes
from rxmrl.training.stages.memory_aware import follow_up_logits


@torch.no_grad()
def memory_matters(model: ReactiveTransformer, tokenizer: RxTokenizer, episodes: Sequence[Episode], *,
                   batch_size: int = 32, max_length: int = 128, seed: int = 0) -> dict[str, float]:
    """Token-averaged follow-up answer loss and accuracy with accumulated vs reset memory.

    Returns ``loss_with_memory``, ``loss_reset_memory``, ``acc_with_memory``, ``acc_reset_memory``,
    ``loss_gap`` (reset − with; > 0 when memory helps) and ``tokens`` (answer tokens scored).
    """
    if not episodes:
        raise ValueError("memory_matters needs at least one episode")
    was_training = model.training
    model.eval()
    rows = episode_rows(tokenizer, episodes, max_length)
    totals = {"with": [0.0, 0.0], "reset": [0.0, 0.0]}  # [summed NLL, correct]
    tokens = 0
    for start in range(0, len(rows), batch_size):
        batch = {k: v.to(model.device) for k, v in pad_episodes(rows[start:start + batch_size]).items()}
        for name, reset in (("with", False), ("reset", True)):
            generator = torch.Generator(model.device).manual_seed(seed + start)
            for logits, _, current in follow_up_logits(model, batch, reset, generator):
                targets = current["input_ids"][:, 1:]
                weights = current["target_mask"][:, 1:] & current["attention_mask"][:, 1:]  # [B, T-1]
                nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
                totals[name][0] += float(nll[weights.flatten()].sum())
                totals[name][1] += float((logits[:, :-1].argmax(-1) == targets)[weights].sum())
                if not reset:
                    tokens += int(weights.sum())
    model.train(was_training)
    n = max(tokens, 1)
    result = {"loss_with_memory": totals["with"][0] / n, "loss_reset_memory": totals["reset"][0] / n,
              "acc_with_memory": totals["with"][1] / n, "acc_reset_memory": totals["reset"][1] / n}
    result["loss_gap"] = result["loss_reset_memory"] - result["loss_with_memory"]
    result["tokens"] = float(tokens)
    return result
