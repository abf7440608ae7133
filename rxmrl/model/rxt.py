"""The Reactive Transformer: one event (query -> answer) at a time, with a fixed-size memory.

Per interaction ``t``::

    answer_t = Decoder(query_t + [A], STM_{t-1})                  # reads memory, never the history
    ED_t     = Encoder(query_t + [A] + answer_t [+ [EOS]])        # per-layer hidden states [B, L, T, D]
    STM_t    = MemoryAttention(STM_{t-1}, ED_t)                   # gated write, STM: [B, L, S, D]

so the cost of a turn does not grow with the number of turns. How a generated answer is written (closed by
an ``[EOS]``, or as generated) is the config's ``interaction_write`` (:mod:`rxmrl.model.interaction`). The
embedding is shared by decoder and encoder. Batched methods take the STM explicitly (``stm: [B, L, S, D]``,
one row per conversation); :meth:`interact` serves one conversation whose STM the model holds (``model.stm``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin
from torch import Tensor, nn

from rxmrl.model.card import MODEL_CARD_TEMPLATE

from rxmrl.model.config import RxTConfig
from rxmrl.model.folder import (CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, Kind, ModelFolder, ModelFolderError,
                                 check_weights, expected_shapes, inspect_folder, load_tokenizer, require_kind,
                                 require_stage, rxt_config)
from rxmrl.model.decoder import Decoder
from rxmrl.model.encoder import Encoder
from rxmrl.model.interaction import (Ids, answer_prompt, interaction_ids, pad_batch,
                                     written_interaction)
from rxmrl.model.layers import MoE
from rxmrl.model.memory import MemoryAttention, ResidualGate, ShortTermMemory
from rxmrl.model.sampling import GREEDY, SamplingConfig, head_token_scores, sample, token_scores
from rxmrl.special_tokens import EOS_ID, PAD_ID

MEMORY_UPDATE_STARTED, MEMORY_UPDATED = -1, -2  # markers streamed by ``interact``


@dataclass
class GenerationOutput:
    """Answers of a batch, excluding the ``[A]`` that opens them.

    ``tokens [B, T]`` (``[PAD]`` after a row's ``[EOS]``), ``log_probs [B, T]`` of each token under the
    distribution it was sampled from (0 on padding), ``mask [B, T]`` True for generated tokens
    (``[EOS]`` included).
    """

    tokens: Tensor
    log_probs: Tensor
    mask: Tensor

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(1)

    def answers(self) -> list[list[int]]:
        """Each row's generated ids (ending with ``[EOS]`` unless it hit the length limit)."""
        return [row[m].tolist() for row, m in zip(self.tokens, self.mask, strict=True)]


@dataclass
class ScoreOutput:
    """Teacher-forced answer scores, ``[B, T]`` each: ``log_probs`` and ``entropy`` of the processed sampling
    distribution (0 on padding), ``mask``, the MoE ``aux_loss``, and ``logits [B, T, V]`` when asked for."""

    logits: Tensor | None
    log_probs: Tensor
    mask: Tensor
    aux_loss: Tensor
    entropy: Tensor | None = None


class ReactiveTransformer(nn.Module, ModelHubMixin, library_name="rxmrl", pipeline_tag="text-generation",
                          tags=["rxmrl", "reactive-transformer", "short-term-memory"],
                          model_card_template=MODEL_CARD_TEMPLATE):
    def __init__(self, config: RxTConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.decoder = Decoder(config, self.embedding)
        self.encoder = None if config.decoder_only else Encoder(config, self.embedding)
        self.memory_attention = None if config.decoder_only else MemoryAttention(config)
        self.stm = ShortTermMemory(config)
        self._init_weights()

    def _init_weights(self) -> None:
        """Normal(0, init_std) for projections, embeddings and experts; gates keep their own init."""
        gate_linears = {id(linear) for gate in self.modules() if isinstance(gate, ResidualGate)
                        for linear in gate.modules() if isinstance(linear, nn.Linear)}
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)) and id(module) not in gate_linears:
                nn.init.normal_(module.weight, std=self.config.init_std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, MoE):
                for weight in (module.w_gate, module.w_up, module.w_down):
                    nn.init.normal_(weight, std=self.config.init_std)

    # ----------------------------------------------------------------------------------- parameters
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint named groups for freezing and per-group learning rates.

        ``embedding`` (shared), ``memory_cross_attention`` (decoder cross-attention + its norms),
        ``decoder`` (the rest of the decoder, LM head included), ``encoder`` (MLM head included),
        ``memory_attention``, ``stm`` (learned STM init, if any).
        """
        groups: dict[str, list[nn.Parameter]] = {
            "embedding": [], "decoder": [], "memory_cross_attention": [], "encoder": [],
            "memory_attention": [], "stm": [],
        }
        seen = {id(self.embedding.weight)}
        groups["embedding"].append(self.embedding.weight)
        for name, param in self.named_parameters():  # named_parameters() skips shared duplicates
            if id(param) in seen:
                continue
            seen.add(id(param))
            top = name.split(".")[0]
            if top == "decoder":
                cross = any(f".{part}." in name for part in ("memory_cross_attn", "memory_norm", "memory_kv_norm"))
                groups["memory_cross_attention" if cross else "decoder"].append(param)
            elif top in groups:
                groups[top].append(param)
            else:
                raise AssertionError(f"parameter {name} belongs to no group")
        return groups

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    # --------------------------------------------------------------------------------------- memory
    def initial_stm(self, batch_size: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """A fresh STM ``[B, L, S, D]`` per the config's ``stm_init`` (normal / zeros / learned)."""
        return self.stm.initial(batch_size, generator)

    def reset_stm(self, batch_size: int = 1, generator: torch.Generator | None = None) -> None:
        """Reset the held STM (the one :meth:`interact` uses)."""
        self.stm.reset(batch_size, generator)

    def export_stm(self) -> Tensor:
        return self.stm.export()

    def load_stm(self, stm: Tensor) -> None:
        self.stm.load(stm)

    def _require_memory_system(self) -> None:
        if self.encoder is None or self.memory_attention is None:
            raise RuntimeError("this model is decoder_only: it has no encoder or memory attention")

    def encode_interactions(
        self, query_ids: Sequence[Ids], answer_ids: Sequence[Ids]
    ) -> tuple[Tensor, Tensor]:
        """Right-padded turns as this model writes them (``interaction_write``) ``[B, T]`` and mask ``[B, T]``;
        ``answer_ids`` as generated (:meth:`GenerationOutput.answers`)."""
        write = self.config.interaction_write
        sequences = [written_interaction(q, a, write) for q, a in zip(query_ids, answer_ids, strict=True)]
        return pad_batch(sequences, side="right", device=self.device)

    def write_memory(self, stm: Tensor, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """``MemoryAttention(stm, Encoder(ids))``: the new STM ``[B, L, S, D]`` (differentiable)."""
        self._require_memory_system()
        encoded, _ = self.encoder(ids, mask)  # [B, L, T, D]
        return self.memory_attention(stm, encoded, mask)

    def update_memory(self, stm: Tensor, query_ids: Sequence[Ids], answer_ids: Sequence[Ids]) -> Tensor:
        """Write each row's turn (query, answer as generated) into its STM row; returns the new STM."""
        ids, mask = self.encode_interactions(query_ids, answer_ids)
        return self.write_memory(stm, ids, mask)

    @torch.no_grad()
    def init_stm_state(
        self, query_ids: Ids, answer_ids: Ids, generator: torch.Generator | None = None
    ) -> None:
        """Start the held STM from a system-prompt interaction written into a fresh memory.

        The answer is given, not generated, so it is written closed (``query [A] answer [EOS]``), as the
        reference's card writes a full interaction, whatever ``interaction_write`` says."""
        fresh = self.initial_stm(1, generator)
        ids, mask = pad_batch([interaction_ids(query_ids, answer_ids)], device=self.device)
        self.stm.load(self.write_memory(fresh, ids, mask))

    # ------------------------------------------------------------------------------------- decoding
    def _decode_steps(
        self,
        query_ids: Sequence[Ids],
        stm: Tensor,
        max_new_tokens: int,
        sampling: SamplingConfig,
        use_cache: bool,
        generator: torch.Generator | None,
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Yield ``(tokens [B], log_probs [B], active [B])`` per step; rows stop at ``[EOS]``.

        Prompts are left-padded so every row's next token lands in the same column; RoPE positions
        count real tokens only, so padding does not shift a row's positions.
        """
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens}, expected >= 1")
        if stm.shape[0] != len(query_ids):
            raise ValueError(f"{len(query_ids)} queries but an STM batch of {stm.shape[0]}")
        ids, mask = pad_batch([answer_prompt(q) for q in query_ids], side="left", device=self.device)
        batch = ids.shape[0]
        active = torch.ones(batch, dtype=torch.bool, device=self.device)
        if use_cache:
            cache = self.decoder.new_cache(stm, ids.shape[1] + max_new_tokens)
            logits, _ = self.decoder(ids, attention_mask=mask, cache=cache)
        else:
            logits, _ = self.decoder(ids, stm, attention_mask=mask)
        for step in range(max_new_tokens):
            tokens, log_probs = sample(logits[:, -1], sampling, generator)
            tokens = torch.where(active, tokens, PAD_ID)
            log_probs = torch.where(active, log_probs, 0.0)
            yield tokens, log_probs, active
            active = active & (tokens != EOS_ID)
            if step == max_new_tokens - 1 or not active.any():
                return
            if use_cache:
                logits, _ = self.decoder(tokens[:, None], attention_mask=active[:, None], cache=cache)
            else:
                ids = torch.cat((ids, tokens[:, None]), dim=1)
                mask = torch.cat((mask, active[:, None]), dim=1)
                logits, _ = self.decoder(ids, stm, attention_mask=mask)

    @torch.no_grad()
    def generate(self, query_ids: Sequence[Ids], stm: Tensor, max_new_tokens: int = 128,
                 sampling: SamplingConfig = GREEDY, use_cache: bool = True,
                 generator: torch.Generator | None = None) -> GenerationOutput:
        """Answer ``B`` queries (``[BOS][Q] q``; ``[A]`` is appended here), row ``b`` reading ``stm[b]``."""
        steps = list(self._decode_steps(query_ids, stm, max_new_tokens, sampling, use_cache, generator))
        tokens, log_probs, active = (torch.stack(parts, dim=1) for parts in zip(*steps, strict=True))
        return GenerationOutput(tokens, log_probs, active)

    def score(
        self,
        query_ids: Sequence[Ids],
        answer_ids: Tensor | Sequence[Ids],
        stm: Tensor,
        answer_mask: Tensor | None = None,
        sampling: SamplingConfig = GREEDY,
        memory_mask: Tensor | None = None,
        with_logits: bool = True,
    ) -> ScoreOutput:
        """Teacher-forced log-probs and entropies of answers (tokens after ``[A]``) in one forward pass.

        Uses the same left-padded layout as :meth:`generate`, and ``log_probs`` come from the processed
        distribution of ``sampling`` (:func:`~rxmrl.model.sampling.token_scores`), so they match the
        log-probs recorded while sampling. Differentiable (through the STM too). Only the N real answer
        positions are projected onto the vocabulary (``[N, V]``, not ``[B, P + T, V]``); ``with_logits=False``
        skips the ``[B, T, V]`` logits altogether, and under top-k keeps no ``[N, V]`` logits in the graph
        (:func:`~rxmrl.model.sampling.head_token_scores`): what a PPO update needs.
        """
        if not isinstance(answer_ids, Tensor):
            answer_ids, answer_mask = pad_batch(answer_ids, side="right", device=self.device)
        elif answer_mask is None:
            answer_mask = answer_ids != PAD_ID
        answer_ids, answer_mask = answer_ids.to(self.device), answer_mask.to(self.device).bool()
        prompt, prompt_mask = pad_batch([answer_prompt(q) for q in query_ids], side="left",
                                        device=self.device)
        ids = torch.cat((prompt, answer_ids[:, :-1]), dim=1)  # [B, P + T - 1]
        mask = torch.cat((prompt_mask, answer_mask[:, :-1]), dim=1)
        hidden, aux = self.decoder.features(ids, stm, memory_mask=memory_mask, attention_mask=mask)
        hidden = hidden[:, prompt.shape[1] - 1 :]  # [B, T, D]: position P-1+j predicts answer j
        if with_logits:
            logits = self.decoder.lm_head(hidden)  # [B, T, V]
            token_lp, token_entropy = token_scores(logits[answer_mask], answer_ids[answer_mask], sampling)  # [N]
        else:  # no [N, V] logits in the graph under top-k (head_token_scores)
            logits = None
            token_lp, token_entropy = head_token_scores(hidden[answer_mask], self.decoder.lm_head,
                                                        answer_ids[answer_mask], sampling)
        log_probs = hidden.new_zeros(answer_mask.shape, dtype=token_lp.dtype).masked_scatter(answer_mask, token_lp)
        entropy = hidden.new_zeros(answer_mask.shape, dtype=token_lp.dtype).masked_scatter(answer_mask,
                                                                                          token_entropy)
        return ScoreOutput(logits, log_probs, answer_mask, aux, entropy)

    @torch.no_grad()
    def batch_interact(self, query_ids: Sequence[Ids], stm: Tensor, max_new_tokens: int = 128,
                       sampling: SamplingConfig = GREEDY,
                       generator: torch.Generator | None = None) -> tuple[GenerationOutput, Tensor]:
        """One event for ``B`` conversations: answer from ``stm``, then write (query, answer) into it."""
        output = self.generate(query_ids, stm, max_new_tokens, sampling, True, generator)
        return output, self.update_memory(stm, query_ids, output.answers())

    @torch.no_grad()
    def interact(
        self,
        query_ids: Ids,
        max_new_tokens: int = 128,
        sampling: SamplingConfig = GREEDY,
        generator: torch.Generator | None = None,
    ) -> Iterator[int]:
        """Stream answer ids for one query from the held STM, then -1, update the STM, then -2."""
        if self.stm.state.shape[0] != 1:
            raise ValueError(f"interact serves one conversation, the held STM has batch "
                             f"{self.stm.state.shape[0]}; call reset_stm(1)")
        answer: list[int] = []
        for tokens, _, _ in self._decode_steps([query_ids], self.stm.state, max_new_tokens,
                                               sampling, True, generator):
            answer.append(int(tokens[0]))
            yield answer[-1]
        yield MEMORY_UPDATE_STARTED
        if self.encoder is not None:
            self.stm.load(self.update_memory(self.stm.state, [query_ids], [answer]))
        yield MEMORY_UPDATED

    # ------------------------------------------------------------------------------- save and load
    def save_pretrained(
        self,
        directory: str | Path,
        *,
        provenance: Mapping[str, Any] | None = None,
        evaluation: Sequence[Mapping[str, Any]] | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        **hub_kwargs: Any,
    ) -> str | None:
        """Write ``config.json``, ``model.safetensors`` (the shared embedding stored once) and ``README.md``.

        The model card (:mod:`rxmrl.model.card`) lists the architecture, parameter counts, ``provenance``
        (e.g. the training run or the converted source) and ``evaluation`` (rows of one table). With
        ``push_to_hub=True, repo_id=...`` the folder is uploaded too (``ModelHubMixin``; needs a login).
        """
        from rxmrl.model.card import card_values

        from rxmrl.runtime import staged_files

        directory = Path(directory)
        values = card_values(self, hub_kwargs.get("repo_id") or directory.name, provenance, evaluation)
        with staged_files(directory) as staging:  # each file replaces its namesake atomically
            return super().save_pretrained(staging, model_card_kwargs={**values, **(model_card_kwargs or {})},
                                           **hub_kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        """What ``ModelHubMixin.save_pretrained`` and ``push_to_hub`` call to write the weights."""
        from rxmrl.model.weights import save_weights

        self.config.save(save_directory / CONFIG_FILE)
        save_weights(self, save_directory / WEIGHTS_FILE)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, device: str | torch.device = "cpu"
    ) -> ReactiveTransformer:
        """Load from a local folder, or from a hub repo id when online (``HF_HUB_OFFLINE`` unset); the folder
        is checked first (:func:`load_rxt`: kind, tensor shapes against ``config.json``)."""
        from rxmrl.hub import local_folder

        local = Path(name_or_path)
        directory = local if local.exists() else local_folder(name_or_path, [CONFIG_FILE, WEIGHTS_FILE])
        return load_rxt(directory, device)


# ------------------------------------------------------------------ checked loading (rxmrl.model.folder)

def checked_rxt_config(path: str | Path, role: str = "model folder", min_stage: tuple[int, str] | None = None):
    """The :class:`RxTConfig` of an RxT folder whose weights match it (:mod:`rxmrl.model.folder`), nothing
    built; ``min_stage``: ``(stage, what needs it)`` for a reader that needs a late enough supervised stage."""
    folder = inspect_folder(path, role)
    require_kind(folder, "rxt", role)
    if min_stage is not None:
        require_stage(folder, min_stage[0], role, min_stage[1])
    config = rxt_config(folder)
    try:
        check_weights(folder.weights, expected_shapes(lambda: ReactiveTransformer(config)))
    except (TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, ModelFolderError):
            raise
        raise ModelFolderError(f"{folder.path / CONFIG_FILE}: describes no buildable model ({error})") from error
    return config


def load_rxt(path: str | Path, device: str | torch.device = "cpu", role: str = "model folder",
             min_stage: tuple[int, str] | None = None) -> ReactiveTransformer:
    """An RxT model from a checked folder (:func:`checked_rxt_config`), its weights loaded and finite (a NaN
    saved into a folder is named here, not blamed on the learning rate of the run that reads it)."""
    from safetensors.torch import load_model

    model = ReactiveTransformer(checked_rxt_config(path, role, min_stage))
    load_model(model, str(Path(path) / WEIGHTS_FILE), device=str(device))
    bad = next((name for name, tensor in model.state_dict().items() if not torch.isfinite(tensor).all()), None)
    if bad is not None:
        raise ModelFolderError(f"{Path(path) / WEIGHTS_FILE}: tensor {bad!r} holds NaN or inf: the run that wrote it "
                               "diverged; use an earlier checkpoint")
    return model.to(device)


def check_folder(path: str | Path, role: str = "model folder", kind: Kind | None = None) -> ModelFolder:
    """Every check a reader of the folder would make, before any work (``--compare``, ``--checkpoint``): its
    kind (when ``kind`` is given), an RxT folder's config, weights and tokenizer; a baseline's Llama is
    checked when loaded."""
    folder = inspect_folder(path, role)
    if kind is not None:
        require_kind(folder, kind, role)
    if folder.kind == "rxt":
        config = checked_rxt_config(path, role)
        if (folder.path / TOKENIZER_FILE).exists():
            load_tokenizer(folder.path, config.vocab_size)
    return folder
