"""Benchmark of one MRL epoch on the issue's workload, through the trainer's real code path.

Workload (the reference framework's figures on this CPU: ~8 s to collect the rollouts, ~7.5 s per update
pass, 10 passes): a tiny RxT (dim 128, 4 layers, 4 heads, vocab 5000), 32 episodes of 4 follow-ups in
batches of 16, 10 PPO epochs. A randomly initialised policy rarely emits [EOS], so every answer runs to
``--answer-tokens`` (the reference's 1,000-1,700 generated tokens/s over 8 s is ~80 tokens per answer).

    python experiments/bench_mrl.py [--answer-tokens 80] [--ppo-epochs 10] [--threads N] [--device cpu|cuda]

Prints the breakdown per epoch: rollout (memory writes, generation, reference scoring, critic), reward,
update (per pass), and the speed-up over the reference's ~83 s per epoch. On a shared machine timings vary
with the load: treat them as provisional.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

REFERENCE_ROLLOUT_S, REFERENCE_UPDATE_PASS_S = 8.0, 7.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--minibatch", type=int, default=32, help="(episode, step) samples per optimizer step")
    parser.add_argument("--ppo-epochs", type=int, default=10)
    parser.add_argument("--answer-tokens", type=int, default=80)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a busy machine)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from rxmrl.config import load_config
    from rxmrl.model import ReactiveTransformer, RxTConfig
    from rxmrl.tokenizer import default_tokenizer
    from rxmrl.training.mrl import MrlRunConfig, StageConfig

    from rxmrl.training.mrl.trainer import MrlTrainer
    from rxmrl.training.mrl.curriculum import epoch_batches

    tokenizer = default_tokenizer(5000)
    torch.manual_seed(0)
    model_config = RxTConfig(vocab_size=tokenizer.vocab_size, dim=128, num_layers=4, num_heads=4, query_heads=2,
                             kv_heads=2, num_experts=4, experts_per_token=2, expert_dim=256, encoder_ff_dim=384,
                             stm_slots=64)
    policy = ReactiveTransformer(model_config).to(args.device)
    config = load_config(MrlRunConfig, None, [
        f"mrl.batch_episodes={args.batch}", f"mrl.minibatch_size={args.minibatch}",
        f"mrl.ppo_epochs={args.ppo_epochs}", f"mrl.max_answer_tokens={args.answer_tokens}",
        "tensorboard=false", "progress=false", "mrl.sampling.top_k=50"])
    config.stages = [StageConfig(steps=args.steps, num_episodes=args.episodes, eval_episodes=1,
                                 trainable=["memory_cross_attention", "memory_attention", "decoder", "critic"])]
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = MrlTrainer(config, policy, tokenizer, run_dir=run_dir)
        train, _ = trainer.stage_data[0]
        trainer._enter_stage(config.stages[0])
        totals: dict[str, float] = {}
        tokens = 0
        start = time.perf_counter()
        for indices in epoch_batches(len(train), args.batch, config.seed, 0, 0):
            record = trainer.iteration(config.stages[0], train, indices)
            print(f"  iteration: rollout {record['time/rollout']:.2f} s, reward {record['time/reward']:.2f} s, "
                  f"update {record['time/update']:.2f} s", flush=True)
            tokens += record["rollout/answer_tokens"] * len(indices) * args.steps
            for key, value in record.items():
                if key.startswith("time/"):
                    totals[key[5:]] = totals.get(key[5:], 0.0) + value
        wall = time.perf_counter() - start
        trainer.close()
    rollout = totals["rollout"]
    print(f"workload: {args.episodes} episodes x {args.steps} follow-ups, batches of {args.batch}, "
          f"{args.ppo_epochs} PPO epochs, minibatch {args.minibatch} samples, <= {args.answer_tokens} answer "
          f"tokens; torch threads {torch.get_num_threads()}, device {args.device}")
    print(f"rollout  {rollout:7.2f} s   (memory writes {totals['rollout_memory']:.2f}, generation "
          f"{totals['rollout_generate']:.2f}, reference log-probs {totals['rollout_reference']:.2f}, critic "
          f"{totals['rollout_critic']:.2f}); {tokens:.0f} tokens generated, {tokens / totals['rollout_generate']:.0f} "
          f"tokens/s in generation")
    print(f"reward   {totals['reward']:7.2f} s")
    print(f"update   {totals['update']:7.2f} s   ({totals['update'] / args.ppo_epochs:.2f} s per pass)")
    print(f"epoch    {wall:7.2f} s wall")
    reference = REFERENCE_ROLLOUT_S + REFERENCE_UPDATE_PASS_S * args.ppo_epochs
    print(f"reference framework: ~{REFERENCE_ROLLOUT_S:.0f} s rollout + {args.ppo_epochs} x "
          f"{REFERENCE_UPDATE_PASS_S} s update = ~{reference:.0f} s per epoch -> speed-up {reference / wall:.1f}x")


if __name__ == "__main__":
    main()
