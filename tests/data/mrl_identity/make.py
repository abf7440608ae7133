"""Tiny MRL runs, one per algorithm path, and what they leave behind: the fixture of the identity test.

Every rollout plan and update of :mod:`rxmrl.training.mrl` runs here over a two-stage curriculum (2 then 3
steps, three iterations) on a 2-layer model: IMPO and GAE with a critic (one-write and whole-episode memory
backprop, memory credit, random resets, teacher forcing with the encoder training), GRPO and RLOO groups (with
the reference member), DMPO online and offline (with the anchor). Each run's logged metrics (every record of
``metrics.jsonl`` but the wall clock: ``time``, ``time/*``) and a SHA-256 of its final weights are what a
refactor must leave bit for bit as they are (``tests/test_mrl_identity.py``).

Written once, before the refactor it guards, on the code it describes::

    OMP_NUM_THREADS=1 python tests/data/mrl_identity/make.py     # writes fixture.json beside this file

Regenerate it only when the numbers are meant to change (and say why in the commit).
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

FIXTURE = Path(__file__).with_name("fixture.json")

TINY = ["mrl.batch_episodes=3", "mrl.minibatch_size=4", "mrl.ppo_epochs=2", "mrl.max_answer_tokens=5",
        "tensorboard=false", "progress=false", "mrl.sampling.top_k=50", "mrl.sampling.temperature=0.9"]

RUNS: dict[str, list[str]] = {
    "impo": ["stages.0.random_reset_ratio=0.5"],
    "impo_episode_backprop": ["mrl.memory_backprop=episode"],
    "impo_memory_credit": ["mrl.objective.memory_credit=0.5"],
    "gae_teacher_forcing_encoder": ["mrl.advantages.estimator=gae", "stages.0.teacher_forcing=true",
                                    'stages.0.trainable=["decoder", "memory_attention", "encoder", "critic"]'],
    "grpo": ["mrl.advantages.estimator=grpo", "mrl.group_size=2"],
    "rloo_reference_member": ["mrl.advantages.estimator=rloo", "mrl.group_size=2", "mrl.reference_member=true"],
    "dmpo_online": ["mrl.algorithm=dmpo", "mrl.group_size=2", "mrl.dmpo.memory_credit=0.5",
                    "mrl.dmpo.min_margin=0.0"],
    "dmpo_offline_anchor": ["mrl.algorithm=dmpo", "mrl.group_size=2", "mrl.dmpo.pairs=offline",
                            "mrl.dmpo.anchor_coef=0.1", "mrl.dmpo.min_margin=0.0"],
}


def tiny_policy(vocab: int):
    from rxmrl.model import ReactiveTransformer, RxTConfig

    torch.manual_seed(0)
    return ReactiveTransformer(RxTConfig(vocab_size=vocab, dim=32, num_layers=2, num_heads=2, query_heads=2,
                                         kv_heads=2, num_experts=2, experts_per_token=1, expert_dim=32,
                                         encoder_ff_dim=48, stm_slots=8, memory_attention="simple"))


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every tensor of ``model.state_dict()`` (name, dtype, shape, bytes): equal only bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def exact(value):
    """A metric value as text that round-trips bit for bit (``repr`` of a float; NaN compares equal as text)."""
    return repr(float(value)) if isinstance(value, float) or (isinstance(value, int) and not isinstance(value, bool)) \
        else value


def records_of(metrics_file: Path) -> list[dict[str, str]]:
    """Every record of a run's ``metrics.jsonl``, without the wall clock (``time``, ``time/*``)."""
    from rxmrl.training.metrics import read_metrics

    return [{k: exact(v) for k, v in record.items() if k != "time" and not k.startswith("time/")}
            for record in read_metrics(metrics_file)]


def tiny_run(name: str, directory: Path) -> dict:
    """Run ``RUNS[name]`` in ``directory``; its records and final weights' digest."""
    from rxmrl.config import apply_overrides, load_config
    from rxmrl.data import default_tokenizer
    from rxmrl.training.mrl import MrlRunConfig, MrlTrainer, StageConfig

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tokenizer = default_tokenizer()
        cfg = load_config(MrlRunConfig, None, TINY)
        cfg.stages = [StageConfig(steps=2, num_episodes=4, eval_episodes=3),  # a second stage: its entry
                      StageConfig(steps=3, num_episodes=3, eval_episodes=2)]
        cfg = apply_overrides(cfg, RUNS[name])
        trainer = MrlTrainer(cfg, tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=directory)
        result = trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return {"records": records_of(directory / "metrics.jsonl"), "weights": weights_digest(trainer.model),
            "steps": trainer.step, "iterations": result.iterations}


def main() -> int:
    fixture = {"torch": torch.__version__, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            fixture["runs"][name] = tiny_run(name, Path(tmp) / name)
            print(f"{name}: {fixture['runs'][name]['steps']} steps, {len(fixture['runs'][name]['records'])} "
                  f"records, weights {fixture['runs'][name]['weights'][:12]}", flush=True)
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
