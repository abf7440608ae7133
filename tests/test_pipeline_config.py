"""``rxmrl run`` configuration: the sections reuse the single commands' configs, overrides are strict."""

from pathlib import Path

import pytest

from rxmrl.cli import main
from rxmrl.config import ConfigError, load_config
from rxmrl.pipeline.config import PipelineConfig
from rxmrl.training.mrl.config import MrlRunConfig
from rxmrl.training.supervised import SupervisedConfig

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "quickstart.toml"


def test_quickstart_sections_are_the_single_command_configs():
    config = load_config(PipelineConfig, QUICKSTART)
    assert isinstance(config.supervised, SupervisedConfig) and isinstance(config.mrl, MrlRunConfig)
    assert config.supervised.model.preset == "nano" and config.supervised.data.source == "embedded"
    standalone = load_config(MrlRunConfig, ROOT / "experiments" / "mrl_quickstart.toml")
    for field in ("mrl", "stages", "optim", "reward", "data_source", "checkpoint_every"):  # kept in sync
        assert getattr(config.mrl, field) == getattr(standalone, field), field
    warmstart = load_config(SupervisedConfig, ROOT / "experiments" / "warmstart.toml")
    for field in ("model", "data", "stage1", "stage2", "stage3", "stage4", "stages", "seed"):
        assert getattr(config.supervised, field) == getattr(warmstart, field), field
    assert config.supervised.stage4.fact_weight > 1  # the embedded curriculum's facts are weighted up
    assert [s.steps for s in config.mrl.stages] == [2, 4, 8]
    assert config.eval.steps == 8 and config.eval.curriculum_config == "steps-8"
    assert config.eval.models == ["warm_start", "mrl", "baseline", "oracle", "random"]


@pytest.mark.parametrize("name", ["micro.toml", "rxt_alpha_supervised.toml"])
def test_published_scale_configs_load_with_their_presets(name):
    config = load_config(PipelineConfig, ROOT / "experiments" / name)
    preset = {"micro.toml": "micro", "rxt_alpha_supervised.toml": "rxt-alpha-supervised"}[name]
    assert config.supervised.model.preset == preset == config.baseline.model.preset
    assert config.mrl.data_source == "ReactiveAI/TinyStories-MRL" and config.eval.num_episodes is None


def test_overrides_reach_nested_sections_and_list_items():
    config = load_config(PipelineConfig, QUICKSTART, ["mrl.mrl.ppo_epochs=2", "mrl.stages.1.epochs=5",
                                                      "supervised.stage4.loop.max_steps=7", "eval.num_episodes=none",
                                                      "baseline.sft.max_steps=3"])
    assert config.mrl.mrl.ppo_epochs == 2 and config.mrl.stages[1].epochs == 5
    assert config.supervised.stage4.loop.max_steps == 7 and config.baseline.sft.max_steps == 3
    assert config.eval.num_episodes is None


def test_unknown_keys_are_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"unknown key 'eval.stepz' in \[eval\]\. Did you mean 'eval.steps'"):
        load_config(PipelineConfig, QUICKSTART, ["eval.stepz=2"])
    with pytest.raises(ConfigError, match="unknown key 'mrl.mrl.ppo_epoch'"):
        load_config(PipelineConfig, QUICKSTART, ["mrl.mrl.ppo_epoch=2"])


def test_bad_values_name_the_key_value_and_expectation():
    with pytest.raises(ConfigError, match=r"eval.steps: expected int, got str 'eight'"):
        load_config(PipelineConfig, QUICKSTART, ["eval.steps=eight"])
    with pytest.raises(ConfigError, match=r"eval.similarity: 'encodr' is not one of .*did you mean 'encoder'"):
        load_config(PipelineConfig, QUICKSTART, ["eval.similarity=encodr"])
    with pytest.raises(ConfigError, match=r"models \['warm_start', 'ppo'\]: expected a non-empty subset"):
        load_config(PipelineConfig, None, ["eval.models=['warm_start', 'ppo']"])


def test_phase_paths_and_seeds_come_from_the_top_level():
    config = load_config(PipelineConfig, QUICKSTART, ["run_dir=/tmp/exp", "seed=3"]).resolved()
    assert config.supervised.run_dir == Path("/tmp/exp/warmstart") and config.mrl.run_dir == "/tmp/exp/mrl"
    assert config.mrl.init == "/tmp/exp/warmstart/stage-4" and config.baseline.output_dir == "/tmp/exp/baseline"
    assert config.supervised.seed == config.mrl.seed == config.baseline.sft.seed == 3
    assert config.eval.source == "embedded"  # "" resolves to the MRL curriculum's source



def test_the_resolved_config_holds_one_seed_per_run_and_the_stage_loops():
    """The top-level seed, one per run it resolves (warm start, MRL, baseline), and the supervised data and
    stage loops (stage 4's loop seed is a measured choice: experiments/warmstart.toml); the evaluation and the
    baseline's data read the run's seed instead of their own."""
    import dataclasses

    def seeds(value, path=""):
        if dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                yield from seeds(getattr(value, field.name), f"{path}{field.name}.")
        if path.endswith("seed."):
            yield path[:-1]

    config = load_config(PipelineConfig, QUICKSTART, ["seed=3"]).resolved()
    loops = [f"supervised.stage{n}.loop.seed" for n in range(1, 5)]
    assert sorted(seeds(config)) == sorted(["seed", "supervised.seed", "supervised.data.seed", "mrl.seed",
                                            "baseline.sft.seed", *loops])
    with pytest.raises(ConfigError, match="eval.seed"):
        load_config(PipelineConfig, QUICKSTART, ["eval.seed=1"])
    from rxmrl.pipeline.phases import readers

    assert {"supervised", "eval", "retention", "audit"} <= set(readers("seed"))  # a new seed redoes them

def test_mrl_validation_defaults_to_the_final_evaluations_reward():
    config = load_config(PipelineConfig, QUICKSTART, ["eval.reward=memory", "eval.similarity=random-embedding"])
    validation = config.resolved().mrl.validation
    assert (validation.presets, validation.similarity, validation.selected) == (
        ["memory"], "random-embedding", "reward/memory")
    chosen = load_config(PipelineConfig, QUICKSTART, ['mrl.validation.presets=["rxlm"]']).resolved()
    assert chosen.mrl.validation.presets == ["rxlm"] and chosen.mrl.validation.similarity == "encoder"


def test_a_section_path_that_disagrees_with_run_dir_is_rejected():
    with pytest.raises(ConfigError, match=r"mrl.run_dir = 'elsewhere': the pipeline places this phase at "
                                          r"'runs/quickstart/mrl'"):
        load_config(PipelineConfig, QUICKSTART, ["mrl.run_dir=elsewhere"])
    with pytest.raises(ConfigError, match=r"supervised.seed = 5: the pipeline seeds every phase"):
        load_config(PipelineConfig, QUICKSTART, ["supervised.seed=5"])


def test_resolved_config_round_trips_through_toml(tmp_path):
    from rxmrl.config import save_config

    config = load_config(PipelineConfig, QUICKSTART, [f"run_dir={tmp_path}", "seed=2"]).resolved()
    assert load_config(PipelineConfig, save_config(config, tmp_path / "config.toml")) == config


def test_run_command_reports_config_errors_in_one_line(capsys):
    assert main(["run", str(QUICKSTART), "--set", "eval.stepz=2"]) == 2
    assert "error: unknown key 'eval.stepz'" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--phases", "eval,plots"]) == 2
    assert "unknown phase(s) ['plots']" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--redo", "model"]) == 2
    assert capsys.readouterr().err.startswith("error: --redo names unknown phase(s) ['model']; expected some of")


def test_every_setting_is_read_by_a_phase_or_declared_operational():
    """The rules on changed settings come from READS: a setting no phase claims would change unnoticed."""
    from rxmrl.config import _flatten, to_dict
    from rxmrl.pipeline.phases import PHASES, dependents, readers

    config = load_config(PipelineConfig, QUICKSTART, ["dmpo.enabled=true"]).resolved()
    keys = [key for key, _ in _flatten(to_dict(config), "")]
    assert [key for key in keys if not readers(key) and key not in ("run_dir", "torch_threads")
            and not key.endswith(("run_dir", "output_dir", "mrl.init"))] == []
    assert readers("eval.max_new_tokens") == ["eval", "retention", "audit"]
    assert dependents(["mrl"]) == ["mrl", "eval", "retention", "audit", "latency", "report"]
    assert dependents(["data"]) == list(PHASES)


def test_dmpo_is_the_mrl_run_with_the_dmpo_algorithm_and_joins_eval_and_retention_when_enabled():
    off = load_config(PipelineConfig, QUICKSTART, ["run_dir=/tmp/exp"]).resolved()
    assert "dmpo" not in off.eval.models and "dmpo" not in off.retention.models
    on = load_config(PipelineConfig, QUICKSTART, ["run_dir=/tmp/exp", "dmpo.enabled=true",
                                                  "dmpo.group_size=3"]).resolved()
    assert on.eval.models[:3] == ["warm_start", "mrl", "dmpo"] and on.retention.models == ["warm_start", "mrl", "dmpo"]
    assert on.audit.models == ["warm_start", "mrl"]  # the audit only when named
    run = on.dmpo_run()
    assert (run.run_dir, run.init, run.mrl.algorithm, run.mrl.group_size) == (
        "/tmp/exp/dmpo", "/tmp/exp/warmstart/stage-4", "dmpo", 3)
    assert [s.teacher_forcing for s in on.mrl.stages] == [True, True, True]  # MRL's own stages keep theirs
    assert [s.teacher_forcing for s in run.stages] == [False, False, False]
    assert ([s.num_episodes for s in run.stages], run.optim, run.reward) == (
        [s.num_episodes for s in on.mrl.stages], on.mrl.optim, on.mrl.reward)  # the same budget and rates
    with pytest.raises(ConfigError, match=r"eval.models names dmpo, but dmpo.enabled = false"):
        load_config(PipelineConfig, QUICKSTART, ['eval.models=["warm_start", "dmpo"]'])


def test_a_dmpo_run_the_mrl_section_cannot_make_is_refused_before_any_phase(capsys, tmp_path):
    assert main(["run", str(QUICKSTART), "--set", f"run_dir={tmp_path}", "--set", "dmpo.enabled=true",
                 "--set", "dmpo.group_size=1", "--set", "mrl.mrl.dmpo.candidates=samples"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: the [dmpo] run ([mrl] with mrl.algorithm = dmpo): mrl.mrl: dmpo pairs two answers")
    assert out.count("\n") == 1 and not (tmp_path / "phases").exists()
