"""experiments/recall_signal.py: the per-episode signal figures and the within-group variance share, on
hand-made recall arrays (nothing here loads a model)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def signal():
    spec = importlib.util.spec_from_file_location("recall_signal", ROOT / "experiments" / "recall_signal.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["recall_signal"] = module
    spec.loader.exec_module(module)
    return module


def test_signal_table_counts_each_kind_of_follow_up(signal):
    nan = np.nan
    # one episode, four follow-ups with facts and one without
    greedy = np.array([[0.0, 0.0, 1.0, 0.0, nan]])
    sampled = np.array([[[0.0, 1.0, 1.0, 0.0, nan]],   # G = 2 answers per follow-up
                        [[0.0, 0.0, 1.0, 0.5, nan]]])
    reset = np.zeros_like(sampled)
    reset[0, 0, 0] = 1.0
    table = {k: v[0] for k, v in signal.signal_table(greedy, sampled, reset).items()}
    assert table["greedy recall"] == pytest.approx(0.25)
    assert table["sampled recall p"] == pytest.approx((0 + 0.5 + 1 + 0.25) / 4)
    assert table["p = 0 (never stated)"] == pytest.approx(0.25)   # follow-up 0 only
    assert table["p = 1 (always stated)"] == pytest.approx(0.25)  # follow-up 2 only
    assert table["mixed groups"] == pytest.approx(0.5)            # follow-ups 1 and 3
    # greedy misses follow-ups 0, 1 and 3; samples reach 1 and 3, the reset memory only 0
    assert table["reachable (of greedy misses)"] == pytest.approx(2 / 3)
    assert table["reachable, reset memory"] == pytest.approx(1 / 3)
    assert table["p on greedy misses"] == pytest.approx((0 + 0.5 + 0.25) / 3)
    assert table["p on greedy misses, reset memory"] == pytest.approx((0.5 + 0 + 0) / 3)


def test_an_episode_without_greedy_misses_has_no_reachable_figure(signal):
    greedy = np.array([[1.0, 1.0]])
    sampled = np.ones((3, 1, 2))
    table = signal.signal_table(greedy, sampled, sampled)
    assert np.isnan(table["reachable (of greedy misses)"][0])
    assert table["mixed groups"][0] == 0.0


def test_within_share_separates_group_noise_from_differences_between_follow_ups(signal):
    # recall decided by the follow-up alone: no variance within a group
    between = np.array([[[1.0, 0.0, 1.0, 0.0]]] * 4)
    assert signal.within_share(between) == pytest.approx(0.0)
    # the same mean for every follow-up: all the variance is within the groups
    within = np.array([[[1.0, 1.0]], [[0.0, 0.0]]])
    assert signal.within_share(within) == pytest.approx(1.0)
    # follow-ups without facts are left out
    with_nan = np.concatenate([within, np.full((2, 1, 1), np.nan)], axis=2)
    assert signal.within_share(with_nan) == pytest.approx(1.0)
