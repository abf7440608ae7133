"""experiments/bench_mrl.py: its argument checks, the reference script's output parsing, and the table.

Nothing here runs the reference framework (rxlm is never our dependency) or times an epoch.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_script("bench_mrl")


def figures(label, rollout, update_pass, epoch, tokens):
    return {"label": label, "rollout_s": rollout, "update_pass_s": update_pass, "epoch_s": epoch,
            "answer_tokens": tokens}


def row_of(table: str, label: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(label))
    return line[len(label):].split()


def test_table_prints_reference_over_ours_for_the_epoch_and_per_answer_token(bench):
    ours = [bench.with_derived(figures("ours impo G=1", 2.0, 1.0, 12.0, 10_000), 10, 128, 80),
            bench.with_derived(figures("ours grpo G=4", 8.0, 4.0, 48.0, 40_000), 10, 512, 80)]
    reference = bench.with_derived(figures("rxlm 0.3.80 impo G=1", 20.0, 10.0, 120.0, 12_000), 10, 128, 80)
    table = bench.format_table(ours, reference)
    # impo: epoch 120 / 12 = 10x; per token (120 / 12000) / (12 / 10000) = 8.3x
    assert row_of(table, "ours impo G=1") == ["2.00", "1.00", "12.00", "10000", "0.00120", "10.0x", "8.3x"]
    # grpo G=4 generates 4x the answers: 2.5x per epoch, 8.3x per token
    assert row_of(table, "ours grpo G=4") == ["8.00", "4.00", "48.00", "40000", "0.00120", "2.5x", "8.3x"]
    assert row_of(table, "rxlm 0.3.80 impo G=1")[-2:] == ["1.0x", "1.0x"]


def test_stored_reference_is_labelled_and_its_token_count_marked_assumed(bench):
    reference = bench.with_derived(bench.STORED_REFERENCE, 10, 128, 80)
    assert reference["epoch_s"] == pytest.approx(8.1 + 10 * 7.45)
    assert reference["answer_tokens"] == 128 * 80 and reference["tokens_assumed"]
    table = bench.format_table([bench.with_derived(figures("ours impo G=1", 2.0, 1.0, 8.26, 10_240), 10, 128, 80)],
                               reference)
    assert "measured earlier" in table and "~10240" in table and "tokens assumed" in table
    assert row_of(table, "ours impo G=1")[-2:] == ["10.0x", "10.0x"]


def test_reference_output_parsing_takes_the_last_json_line(bench):
    line = {"framework": "rxlm 0.3.80", "rollout_s": 9.0, "update_pass_s": 7.0, "epoch_s": 79.0,
            "answer_tokens": 10_000}
    stdout = "Computing ref model log probs\n" + json.dumps({"rollout_s": 1}) + "\n" + json.dumps(line) + "\n"
    parsed = bench.parse_reference_output(stdout)
    assert parsed["epoch_s"] == 79.0 and parsed["label"] == "rxlm 0.3.80 impo G=1"
    with pytest.raises(ValueError, match="no JSON line"):
        bench.parse_reference_output("Traceback (most recent call last):\n  boom\n")


def test_table_of_an_even_number_of_repeats(bench):
    runs = [figures("ours impo G=1", 2.0, 1.0, e, t) for e, t in ((10.0, 10_239), (12.0, 10_240))]
    reference = [figures("rxlm 0.3.80 impo G=1", 20.0, 10.0, e, t) for e, t in ((100.0, 9_861), (120.0, 9_862))]
    ours = bench.with_derived(bench.median_figures(runs), 10, 128, 80)
    table = bench.format_table([ours], bench.with_derived(bench.median_figures(reference), 10, 128, 80))
    assert row_of(table, "ours impo G=1")[2:4] == ["11.00", "10240"]  # median 10239.5 printed whole
    assert row_of(table, "rxlm 0.3.80 impo G=1")[2:4] == ["110.00", "9862"]


def test_medians_of_repeats(bench):
    runs = [figures("ours impo G=1", r, 1.0, e, 100) for r, e in ((1.0, 9.0), (3.0, 7.0), (2.0, 8.0))]
    merged = bench.median_figures(runs)
    assert (merged["rollout_s"], merged["epoch_s"], merged["repeats"], merged["label"]) == (2.0, 8.0, 3,
                                                                                           "ours impo G=1")


def test_reference_command_hands_over_the_workload(bench, tmp_path):
    args = bench.parse_args(["--threads", "1", "--answer-tokens", "40"])
    command = bench.reference_command("/venv/bin/python", args, tmp_path / "workload.json")
    assert command[:2] == ["/venv/bin/python", str(ROOT / "experiments" / "bench_mrl_rxlm.py")]
    assert command[command.index("--workload") + 1] == str(tmp_path / "workload.json")
    assert command[command.index("--answer-tokens") + 1] == "40" and command[-2:] == ["--threads", "1"]


def test_group_estimators_need_a_group(bench):
    assert bench.parse_args(["--estimator", "impo", "grpo", "rloo"]).estimator == ["impo", "grpo", "rloo"]
    with pytest.raises(SystemExit):
        bench.parse_args(["--estimator", "grpo", "--group-size", "1"])


def test_run_config_sets_the_estimator_and_group(bench):
    args = bench.parse_args([])
    config = bench.run_config(args, "rloo", 4)
    assert (config.mrl.advantages.estimator, config.mrl.group_size, config.mrl.ppo_epochs) == ("rloo", 4, 10)
    assert config.mrl.max_answer_tokens == 80 and config.stages[0].steps == 4
    assert not config.mrl.uses_critic


def test_bench_tokenizer_grows_to_the_issue_vocabulary_without_changing_the_text_ids(bench):
    from rxmrl.data import default_tokenizer

    tokenizer = default_tokenizer(5000)
    grown = bench.bench_tokenizer(5000)
    assert grown.vocab_size == 5000 and tokenizer.vocab_size < 5000  # the cached tokenizer is left as it was
    text = "Sam went home. [Q] Where is the ball?"
    assert grown.encode(text) == tokenizer.encode(text)
    assert grown.decode([tokenizer.vocab_size]) == "<filler-0>"
