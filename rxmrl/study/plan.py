"""What a seed study runs: seeds x perturbations of one warm-start recipe, each run its own folder.

A *recipe* is a supervised config (``experiments/warmstart.toml``) plus ``--set`` overrides. A run of the
study is that recipe with one seed and one perturbation, started from one checkpoint (``init``):

    run seed s       sets ``seed`` and ``stageN.loop.seed`` of every stage the study trains (data order, noise)
    perturbation     something that should not decide the outcome but changes the arithmetic:
        fused        AdamW in one fused kernel, one torch thread (the reference arm)
        foreach      AdamW as torch's multi-tensor loop: the same rule rounded in another order
        threads2     two torch threads: matmuls reduce in another order
        fp32         no bf16 autocast; on CUDA only (on a CPU every run computes in float32 already)

Training a stage 3 as well (``stages = [3, 4]``, ``init`` a stage-2 checkpoint) makes the stage-3 seed part
of the run seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Perturbation:
    name: str
    threads: int  # torch threads of the run
    settings: tuple[tuple[str, str], ...]  # (key under stageN., value) set for every trained stage
    cuda_only: bool = False  # changes nothing on a CPU


PERTURBATIONS = {p.name: p for p in (
    Perturbation("fused", 1, (("optim.kernel", "fused"),)),
    Perturbation("foreach", 1, (("optim.kernel", "foreach"),)),
    Perturbation("threads2", 2, (("optim.kernel", "fused"),)),
    Perturbation("fp32", 1, (("optim.kernel", "fused"), ("loop.amp", "false")), cuda_only=True),
)}


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: the command's config and overrides, the stages it trains, its threads."""

    seed: int
    perturbation: Perturbation
    config: Path
    overrides: tuple[str, ...]  # the recipe's, then the run's own (seed, perturbation, run_dir, init)
    stages: tuple[int, ...]

    @property
    def name(self) -> str:
        return f"seed{self.seed}-{self.perturbation.name}"

    @property
    def threads(self) -> int:
        return self.perturbation.threads

    def spec(self) -> dict[str, Any]:
        """What the run's worker reads (``spec.json``): plain JSON."""
        return {"name": self.name, "seed": self.seed, "perturbation": self.perturbation.name,
                "threads": self.threads, "config": str(self.config), "overrides": list(self.overrides),
                "stages": list(self.stages)}


def parse_perturbations(names: Sequence[str], cuda: bool) -> list[Perturbation]:
    """The named perturbations; an unknown name, or a CUDA-only one without CUDA, is a ``ValueError``."""
    chosen = []
    for name in names:
        if name not in PERTURBATIONS:
            raise ValueError(f"perturbation {name!r} is not one of {', '.join(PERTURBATIONS)}")
        perturbation = PERTURBATIONS[name]
        if perturbation.cuda_only and not cuda:
            raise ValueError(f"perturbation {name!r} changes nothing on a CPU: bf16 autocast runs on CUDA only, "
                             "so every CPU run computes in float32")
        chosen.append(perturbation)
    if len(set(names)) != len(names):
        raise ValueError(f"perturbations {list(names)} name one twice")
    return chosen


def plan_runs(config: Path, recipe: Sequence[str], init: Path, out: Path, seeds: Sequence[int],
              perturbations: Sequence[Perturbation], stages: Sequence[int]) -> list[StudyRun]:
    """Every seed with every perturbation, seed-major; each run trains into ``out/runs/NAME``."""
    runs = []
    for seed in seeds:
        for perturbation in perturbations:
            run_dir = out / "runs" / f"seed{seed}-{perturbation.name}"
            own = [f"run_dir={run_dir}", f"init={init}", f"seed={seed}"]
            for stage in stages:
                own += [f"stage{stage}.loop.seed={seed}", f"stage{stage}.loop.progress=false"]
                own += [f"stage{stage}.{key}={value}" for key, value in perturbation.settings]
            runs.append(StudyRun(seed, perturbation, config, (*recipe, *own), tuple(stages)))
    return runs
