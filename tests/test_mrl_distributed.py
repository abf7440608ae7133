"""MRL (PPO and DMPO) under two gloo processes: each rank rolls out its own shard of every global batch, DDP
keeps the ranks' parameters identical, and a last batch with fewer episodes than ranks still trains."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from rxmrl.data import default_tokenizer
from rxmrl.training.distributed import cleanup, init_distributed
from rxmrl.training.mrl import MrlTrainer
from rxmrl.training.mrl.curriculum import rank_minibatches, rank_shard

sys.path.insert(0, str(Path(__file__).parent))
from test_distributed import free_port  # noqa: E402
from test_mrl_trainer import tiny_config, tiny_policy  # noqa: E402


def test_rank_shards_cover_a_batch_once_and_minibatch_counts_match():
    batch = [7, 3, 9, 1, 4]
    shards = [rank_shard(batch, rank, 2) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == sorted(batch) and not set(shards[0]) & set(shards[1])
    assert rank_shard([5], 1, 2) == [5]  # fewer episodes than ranks: the extra rank repeats one
    steps, minibatch = 2, 4
    counts = [len(rank_minibatches(len(s) * steps, len(batch), steps, 2, minibatch, torch.randperm(len(s) * steps)))
              for s in shards]
    assert counts[0] == counts[1] == 2  # 3 episodes x 2 steps = 6 samples -> 2 minibatches on both ranks
    single = rank_minibatches(10, 5, 2, 1, 4, torch.arange(10))
    assert [m.tolist() for m in single] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # one process: plain chunks


def _worker(rank: int, world_size: int, port: int, out: str, *overrides: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    init_distributed()
    tokenizer = default_tokenizer()
    trainer = MrlTrainer(tiny_config(*overrides), tiny_policy(tokenizer.vocab_size), tokenizer, run_dir=Path(out) / "run")
    seen: list[list[int]] = []
    collect = trainer.collect

    def recording(stage, data, indices):
        seen.append(list(indices))
        return collect(stage, data, indices)

    trainer.collect = recording
    trainer.fit()
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"seen": seen, "state": state, "step": trainer.step}, Path(out) / f"rank{rank}.pt")
    cleanup()


@pytest.mark.parametrize("algorithm", [(), ("mrl.algorithm=dmpo", "mrl.group_size=2")], ids=["ppo", "dmpo"])
def test_two_ranks_roll_out_disjoint_shards_and_stay_identical(tmp_path, algorithm):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path), *algorithm), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["step"] == ranks[1]["step"] > 0
    # tiny_config: 4 episodes in global batches of 3 -> [3 episodes split 2 + 1], [1 episode, repeated]
    first = [set(r["seen"][0]) for r in ranks]
    assert len(first[0]) == 2 and len(first[1]) == 1 and not first[0] & first[1]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"])
    for name, value in ranks[0]["state"].items():
        torch.testing.assert_close(ranks[1]["state"][name], value, rtol=0, atol=0, msg=name)
    assert (tmp_path / "run" / "final").is_dir()  # written once, by rank 0
