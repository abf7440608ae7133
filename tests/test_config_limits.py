"""Issue #35, defect 4 and the config matrix: the whole resolved config is checked before the first phase.

Every numeric field of the quickstart's resolved config is set to NaN, inf, 0 and -1 in turn; each value
that field cannot take is refused by ``load_config`` (what every command calls before any work) with a
``ConfigError`` naming the key. ``ZERO_ALLOWED`` is the specification of the fields where 0 means something
(a seed, "no warm-up", "no decay", a coefficient switched off); no field takes a negative value, NaN or inf.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

import pytest

from rxmrl.config import ConfigError, _flatten, load_config, to_dict
from rxmrl.pipeline.config import PipelineConfig

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.toml"

ZERO_ALLOWED = re.compile(r"(^|\.)(" + "|".join([
    r"seed", r"checkpoint_every", r"weight_decay", r"warmup_steps", r"min_lr_ratio",  # off / constant
    r"ar_weight", r"mlm_weight", r"moe_aux_weight", r"mask_prob", r"memory_noise",  # stage 1-2 loss terms
    r"first_weight", r"step_weight", r"step_decay", r"weight_jitter", r"stm_noise", r"input_noise", r"label_noise",
    r"centred_weight",  # stage 3's targets and noise
    r"unfreeze_\w+_at", r"probe_every",  # stage 4: from the start / never
    r"long_range_ratio", r"random_reset_ratio",  # shares
    r"\w+_coef", r"memory_credit", r"gamma", r"lam", r"min_margin", r"fact_weight",  # objective terms off
    r"mrl\.optim\.lr", r"group_lr\.\w+",  # a frozen component
    r"max_grad_norm",  # TRL: no clipping
]) + r")$")

VALUES = {"nan": "nan", "inf": "inf", "zero": "0", "minus_one": "-1"}


@functools.cache
def numeric_keys() -> list[str]:
    resolved = load_config(PipelineConfig, QUICKSTART).resolved()
    return [key for key, value in _flatten(to_dict(resolved), "")
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def test_the_matrix_covers_every_section_of_the_quickstart():
    sections = {key.split(".")[0] for key in numeric_keys()}
    assert {"supervised", "mrl", "baseline", "eval", "dmpo", "latency", "report"} <= sections
    assert len(numeric_keys()) > 150


@pytest.mark.parametrize("name", list(VALUES))
def test_each_numeric_field_refuses_what_it_cannot_take_before_any_work(name):
    value, accepted = VALUES[name], []
    for key in numeric_keys():
        if name == "zero" and ZERO_ALLOWED.search(key):
            continue
        started = time.perf_counter()
        try:
            load_config(PipelineConfig, QUICKSTART, [f"{key}={value}"])
            accepted.append(key)
        except ConfigError as error:
            assert key.split(".")[-1] in str(error) or key in str(error), (key, str(error))
        assert time.perf_counter() - started < 20
    assert accepted == [], f"{value} accepted by: {accepted}"


@pytest.mark.parametrize("override, named", [
    ("baseline.sft.learning_rate=-1", "baseline.sft.learning_rate = -1.0: expected a number > 0"),
    ("baseline.sft.learning_rate=nan", "baseline.sft.learning_rate = nan: expected a finite number"),
    ("baseline.sft.batch_size=0", "baseline.sft.batch_size = 0: expected a number >= 1"),
    ("baseline.sft.warmup_steps=-1", "baseline.sft.warmup_steps = -1: expected a number >= 0"),
    ("baseline.sft.max_steps=0", "baseline.sft.max_steps = 0: expected a number >= 1"),
    ("baseline.data.num_episodes=0", "baseline.data.num_episodes = 0: expected a number >= 1"),
    ("mrl.optim.lr=nan", "mrl.optim.lr = nan: expected a finite number"),
    ("mrl.optim.group_lr.decoder=inf", "mrl.optim.group_lr.decoder = inf: expected a finite number"),
    ("mrl.mrl.sampling.temperature=nan", "mrl.mrl.sampling.temperature = nan: expected a finite number"),
    ("mrl.mrl.sampling.top_p=0", "mrl.mrl.sampling.top_p = 0.0: expected a number in (0, 1]"),
    ("mrl.mrl.sampling.top_k=0", "mrl.mrl.sampling.top_k = 0: expected a number >= 1"),
    ("mrl.stages.0.trainable=[]", "mrl.stages.0.trainable = []: expected a non-empty list"),
    ("report.histogram_bins=0", "report.histogram_bins = 0: expected a number >= 1"),
])
def test_defect_4_rxmrl_run_refuses_a_bad_late_section_before_the_first_phase(override, named, tmp_path, capsys,
                                                                             monkeypatch):
    from rxmrl.cli import main
    from rxmrl.pipeline import run

    def no_phase(*_args, **_kwargs):
        raise AssertionError(f"a phase started with {override}")

    monkeypatch.setattr(run, "_run_phases", no_phase)
    run_dir = tmp_path / "run"
    assert main(["run", str(QUICKSTART), "--set", f"run_dir={run_dir}", "--set", override]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {named}\n"
    assert "Traceback" not in captured.out + captured.err
    assert not run_dir.exists()


def test_limits_name_real_fields_and_known_rules():
    import dataclasses

    from rxmrl.config import LIMIT_RULES

    def classes(node):
        if dataclasses.is_dataclass(node):
            yield type(node)
            for f in dataclasses.fields(node):
                yield from classes(getattr(node, f.name))
        elif isinstance(node, (list, tuple)):
            for item in node:
                yield from classes(item)

    declared = {cls for cls in classes(PipelineConfig()) if "LIMITS" in vars(cls)}
    assert len(declared) >= 10
    for cls in declared:
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(cls.LIMITS) <= names and set(cls.LIMITS.values()) <= set(LIMIT_RULES), cls
