"""A refactor of MRL changes no numbers: tiny runs of every algorithm path equal the recorded fixture.

``tests/data/mrl_identity/make.py`` ran each path (IMPO, GAE, GRPO, RLOO, DMPO and their variants) on the
code before the rollout plans and the run harness, and recorded every logged metric and a digest of the final
weights. Each run here must reproduce them bit for bit. Metric names dropped since as duplicates of another
name are checked to have carried exactly the kept name's value.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

MAKE = Path(__file__).parent / "data" / "mrl_identity" / "make.py"
_spec = importlib.util.spec_from_file_location("mrl_identity_make", MAKE)
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

FIXTURE = json.loads(make.FIXTURE.read_text())

# names #31 dropped as duplicates of train/loss/total and train/loss/stabilisation_kl: logged once, never again
DROPPED = ("train/loss", "train/policy/approx_kl")


@pytest.mark.skipif(torch.__version__ != FIXTURE["torch"],
                    reason=f"the fixture was recorded with torch {FIXTURE['torch']}: other kernels, other bits")
@pytest.mark.parametrize("name", sorted(make.RUNS))
def test_a_tiny_run_is_bit_identical_to_the_fixture(name, tmp_path):
    recorded = FIXTURE["runs"][name]
    run = make.tiny_run(name, tmp_path / name)
    assert (run["steps"], run["iterations"]) == (recorded["steps"], recorded["iterations"])
    assert run["records"] == recorded["records"]
    assert not any(name in record for record in run["records"] for name in DROPPED)
    assert run["weights"] == recorded["weights"]


def test_the_digest_tells_one_changed_bit():
    model = torch.nn.Linear(3, 2)
    before = make.weights_digest(model)
    with torch.no_grad():
        model.weight[0, 0] = torch.nextafter(model.weight[0, 0], torch.tensor(1.0))
    assert make.weights_digest(model) != before
