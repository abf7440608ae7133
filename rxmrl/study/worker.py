"""One run of a seed study, in its own process: ``python -m rxmrl.study.worker RUN_DIR``.

It trains the stages of ``RUN_DIR/spec.json`` exactly as ``rxmrl train supervised --config C --stages S --set
...`` would (same config loading, same resume), then measures retention on the last stage's model and writes
``RUN_DIR/run.json`` (:mod:`rxmrl.study.runner`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def measure(model_dir: Path, retention: dict[str, Any], source: str, data_seed: int) -> dict[str, Any]:
    """Retention of one checkpoint: recall with the reference conversation in memory and with a reset memory,
    and their paired gap (:mod:`rxmrl.evaluation.retention`)."""
    from rxmrl.evaluation.retention import measure_retention, retention_env
    from rxmrl.model import ReactiveTransformer
    from rxmrl.tokenizer import RxTokenizer

    env = retention_env(RxTokenizer.load(model_dir), f"steps-{retention['steps']}", num_episodes=retention["episodes"],
                        source=source, data_seed=data_seed)
    model = ReactiveTransformer.from_pretrained(model_dir).eval()
    result = measure_retention({"model": model}, env, retention["episodes"])
    return {"recall": result.with_memory["model"].recall().as_dict(),
            "reset_recall": result.reset_memory["model"].recall().as_dict(),
            "gap": result.gap["model"].fact_recall_difference.as_dict(),
            "retention": {"config": f"steps-{retention['steps']}", "split": "validation",
                          "episodes": result.with_memory["model"].num_episodes}}


def run(run_dir: Path) -> dict[str, Any]:
    from rxmrl.config import config_from_args
    from rxmrl.runtime import torch_threads, write_json
    from rxmrl.training.supervised import SupervisedConfig, run_supervised, stage_dir

    spec = json.loads((run_dir / "spec.json").read_text(encoding="utf-8"))
    config = config_from_args(SupervisedConfig, argparse.Namespace(config=spec["config"],
                                                                   overrides=spec["overrides"]))
    with torch_threads(spec["threads"]):
        reports = run_supervised(config, spec["stages"])
        last = stage_dir(config.run_dir, max(spec["stages"]))
        record = {key: spec[key] for key in ("name", "seed", "perturbation", "threads")}
        record |= measure(last, spec["retention"], config.data.source, config.data.seed)
    stage4 = next((r for r in reports if r.stage == 4), None)
    record |= {"stage_seconds": {str(r.stage): r.seconds for r in reports},
               "stage4_seconds": stage4.seconds if stage4 else None,
               "probe": stage4.memory if stage4 else None, "model": str(last)}
    write_json(run_dir / "run.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a study's run folder holding spec.json")
    run_dir = parser.parse_args(argv).run_dir
    record = run(run_dir)
    print(f"{record['name']}: recall {record['recall']['mean']:.3f}, reset memory "
          f"{record['reset_recall']['mean']:.3f}, gap {record['gap']['mean']:+.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
