"""Metrics go to metrics.jsonl and TensorBoard from rank 0 only, flushed as they are written."""

from __future__ import annotations

import json

from rxmrl.training.metrics import MetricsLogger, read_metrics


def test_records_are_flushed_to_jsonl_and_tensorboard_as_they_are_logged(tmp_path):
    logger = MetricsLogger(tmp_path, enabled=True, tensorboard=True)
    logger.log(1, {"loss": 2.5, "lr/encoder": 1e-4})
    logger.log(2, {"loss": float("nan")})
    records = read_metrics(tmp_path / "metrics.jsonl")  # readable before close: flushed
    assert [(r["step"], r["loss"]) for r in records] == [(1, 2.5), (2, "nan")]
    assert records[0]["lr/encoder"] == 1e-4
    for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))  # strict JSON
    logger.close()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_other_ranks_write_nothing(tmp_path):
    logger = MetricsLogger(tmp_path / "rank1", enabled=False)
    logger.log(1, {"loss": 1.0})
    logger.close()
    assert not (tmp_path / "rank1").exists()
