"""The resumable batch order: seeded epochs, rank sharding, identical order after a resume."""

from __future__ import annotations

import pytest

from rxmrl.training.data_order import BatchOrder


def take(order: BatchOrder, n: int) -> list[list[int]]:
    return [next(order) for _ in range(n)]


def test_every_example_appears_once_per_epoch_and_epochs_reshuffle():
    order = BatchOrder(12, batch_size=4, seed=3)
    epoch0, epoch1 = take(order, 3), take(order, 3)
    assert sorted(i for b in epoch0 for i in b) == list(range(12))
    assert sorted(i for b in epoch1 for i in b) == list(range(12))
    assert epoch0 != epoch1 and order.epoch == 1


def test_ranks_split_the_same_global_batches_as_one_process():
    single = take(BatchOrder(20, batch_size=4, seed=1), 7)
    rank0 = take(BatchOrder(20, batch_size=2, seed=1, rank=0, world_size=2), 7)
    rank1 = take(BatchOrder(20, batch_size=2, seed=1, rank=1, world_size=2), 7)
    assert [a + b for a, b in zip(rank0, rank1)] == single


def test_loading_a_saved_position_continues_with_the_same_batches():
    order = BatchOrder(10, batch_size=3, seed=5)
    take(order, 4)  # crosses into epoch 1 (3 batches per epoch, the partial one dropped)
    saved = order.state_dict()
    expected = take(order, 5)
    fresh = BatchOrder(10, batch_size=3, seed=5)
    fresh.load_state_dict(saved)
    assert take(fresh, 5) == expected


def test_a_position_from_another_data_set_is_refused():
    order = BatchOrder(10, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="data position is for 12 examples, seed 0 and a global batch of 2; this "
                                         r"run has 10, 0 and 2 \(batch_size x ranks\)"):
        order.load_state_dict(BatchOrder(12, batch_size=2).state_dict())
    with pytest.raises(ValueError, match="global batch of 4; this run has 10, 0 and 2"):
        order.load_state_dict(BatchOrder(10, batch_size=4).state_dict())  # a changed batch size
    order.load_state_dict(BatchOrder(10, batch_size=1, world_size=2).state_dict())  # the same global batch
    with pytest.raises(ValueError, match="3 examples cannot fill one global batch of 2 x 2 ranks = 4"):
        BatchOrder(3, batch_size=2, world_size=2)
