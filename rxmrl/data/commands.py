"""``rxmrl data generate|inspect`` and ``rxmrl tokenizer train``.

The top level stays light (only argparse): data and tokenizer modules load inside the handlers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def _reporting_errors(handler):
    """Data errors (bad rows, unknown configs, missing files) print one clear line instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        from rxmrl.data.schema import CurriculumValidationError

        try:
            return handler(args)
        except (CurriculumValidationError, FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2

    return run


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate or inspect the TinyStories-MRL curriculum")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    generate = data_commands.add_parser("generate", help="write the embedded curriculum as parquet + dataset card")
    generate.add_argument("--out", required=True, type=Path, help="output folder (DIR/steps-N/{split}.parquet)")
    generate.add_argument("--configs", nargs="+", default=None, help="configs to write (default: all embedded)")
    generate.add_argument("--num-train", type=int, default=None, help="episodes per train split")
    generate.add_argument("--num-validation", type=int, default=None, help="episodes per validation split")
    generate.add_argument("--num-supervised", type=int, default=None, help="episodes in steps-6/supervised")
    generate.add_argument("--num-interactions", type=int, default=20_000, help="SFT interactions (train)")
    generate.add_argument("--num-stories", type=int, default=10_000, help="plain stories (train)")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=_reporting_errors(_generate))

    inspect = data_commands.add_parser("inspect", help="counts, lengths and a sample episode of a source")
    inspect.add_argument("source", help="'embedded', a folder, a .jsonl/.parquet file, or a hub id")
    inspect.add_argument("--config", action="append", help="config(s) to inspect (default: all found)")
    inspect.add_argument("--split", action="append", help="split(s) (default: train and validation)")
    inspect.add_argument("--num-episodes", type=int, default=None, help="episodes per split (embedded size)")
    inspect.add_argument("--tokenizer", default=None, help="tokenizer.json or folder (default: embedded one)")
    inspect.add_argument("--max-length", type=int, default=256, help="interaction length for truncation counts")
    inspect.set_defaults(func=_reporting_errors(_inspect))

    tokenizer = subparsers.add_parser("tokenizer", help="train the byte-level BPE tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    train = tokenizer_commands.add_parser("train", help="train on text files or the embedded corpus")
    train.add_argument("inputs", nargs="*", type=Path,
                       help=".txt (one text per line), .jsonl or .parquet (text / query+answer / episode rows); "
                            "none: the embedded corpus")
    train.add_argument("--out", required=True, type=Path, help="folder for tokenizer.json")
    train.add_argument("--vocab-size", type=int, default=4096)
    train.add_argument("--min-frequency", type=int, default=2)
    train.set_defaults(func=_reporting_errors(_train_tokenizer))


# ---------------------------------------------------------------------------------------------- generate

def _generate(args: argparse.Namespace) -> int:
    from rxmrl.data import storygen
    from rxmrl.data.curriculum import INCOMPLETE, mark_incomplete, write_episodes
    from rxmrl.data.schema import EMBEDDED_CONFIGS, parse_config

    from rxmrl.runtime import check_counts, check_output

    check_counts(args, "num_train", "num_validation", "num_supervised", "num_interactions", "num_stories")
    check_output(args.out, "--out", folder=True)
    configs = args.configs or list(EMBEDDED_CONFIGS)
    for config in configs:
        parse_config(config)
    sizes = {"train": args.num_train, "validation": args.num_validation, "supervised": args.num_supervised}
    written: dict[str, dict[str, int]] = {}
    mark_incomplete(args.out)  # until the card is written: a killed run leaves a dataset readers refuse
    for config in configs:
        splits = ["train", "validation"] + (["supervised"] if config == "steps-6" else [])
        for split in splits:
            episodes = storygen.generate_episodes(config, split, sizes[split], args.seed)
            path = write_episodes(episodes, args.out / config / f"{split}.parquet")
            written.setdefault(config, {})[split] = len(episodes)
            print(f"{path}: {len(episodes)} episodes")
    from rxmrl.runtime import write_text

    corpora = _write_corpora(args)
    write_text(args.out / "README.md", _dataset_card(written, corpora, args.seed))
    (args.out / INCOMPLETE).unlink()
    print(f"{args.out / 'README.md'}: dataset card")
    return 0


def _write_corpora(args: argparse.Namespace) -> dict[str, dict[str, int]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rxmrl.data import storygen
    from rxmrl.runtime import atomic_file

    counts: dict[str, dict[str, int]] = {"sft": {}, "stories": {}}
    for split, share in (("train", 1), ("validation", 10)):
        interactions = storygen.generate_interactions(split, max(1, args.num_interactions // share), args.seed)
        stories = storygen.generate_stories(split, max(1, args.num_stories // share), args.seed)
        for name, table in (
            ("sft", pa.table({"query": [i.query for i in interactions], "answer": [i.answer for i in interactions]})),
            ("stories", pa.table({"text": stories})),
        ):
            with atomic_file(args.out / name / f"{split}.parquet") as temporary:
                pq.write_table(table, temporary)
            counts[name][split] = table.num_rows
            print(f"{args.out / name / f'{split}.parquet'}: {table.num_rows} rows")
    return counts


def _dataset_card(written: dict[str, dict[str, int]], corpora: dict[str, dict[str, int]], seed: int) -> str:
    from rxmrl.data.storygen import GENERATOR_VERSION

    lines = ["---", "configs:"]
    for config, splits in {**written, **corpora}.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {config}/{split}.parquet" for split in splits]
    lines += ["---", "", "# TinyStories-MRL (embedded, generated by rxmrl)", "",
              f"Generated offline by `rxmrl data generate` (generator v{GENERATOR_VERSION}, seed {seed}) in the "
              "schema of `ReactiveAI/TinyStories-MRL`: `query`, `answer` (the interaction to save) and "
              "`interactions: list<struct<answer, query>>` (the follow-ups). Extra columns: `facts` "
              "(per follow-up, the words its reference answer repeats and the interaction that stated them, "
              "0 = the saved one) and `strategy` (`cumulative` or `long_range`). Splits never share a "
              "saved interaction. `sft/` holds single interactions, `stories/` plain stories.", "",
              "| config | split | rows |", "|---|---|---|"]
    for config, splits in {**written, **corpora}.items():
        lines += [f"| {config} | {split} | {rows} |" for split, rows in splits.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- inspect

def _configs_of(source: str) -> list[str]:
    from rxmrl.data.schema import EMBEDDED_CONFIGS, CurriculumValidationError, parse_config

    path = Path(source)
    if source == "embedded":
        return list(EMBEDDED_CONFIGS)
    if path.is_file():
        raise CurriculumValidationError(f"{source} is one file: say which config it holds with --config steps-N")
    if path.is_dir():
        found = []
        for child in sorted(path.iterdir()):
            try:
                found.append((parse_config(child.name), child.name))
            except CurriculumValidationError:
                continue
        return [name for _, name in sorted(found)]
    from rxmrl.data.schema import PUBLISHED_CONFIGS

    return list(PUBLISHED_CONFIGS)


def _stats(values: list[int]) -> str:
    ordered = sorted(values)
    return f"{statistics.fmean(ordered):6.1f} {ordered[int(0.95 * (len(ordered) - 1))]:4d} {ordered[-1]:4d}"


def _inspect(args: argparse.Namespace) -> int:
    from rxmrl.data.curriculum import load_curriculum, refuse_incomplete, token_lengths
    from rxmrl.data.embedded_tokenizer import default_tokenizer
    from rxmrl.tokenizer import RxTokenizer

    if Path(args.source).exists():
        refuse_incomplete(Path(args.source))  # once, not once per split
    tokenizer = RxTokenizer.load(args.tokenizer) if args.tokenizer else default_tokenizer()
    configs = args.config or _configs_of(args.source)
    splits = args.split or ["train", "validation"]
    print(f"source {args.source}; tokenizer vocab {tokenizer.vocab_size}; lengths as mean p95 max")
    header = (f"{'config':<11}{'split':<11}{'episodes':>8}{'follow-ups':>11}  {'query words':>16}  "
              f"{'answer words':>16}  {'interaction tokens':>18}  over {args.max_length}")
    print(header)
    sample, failed = None, []
    for config in configs:
        for split in splits:
            try:
                data = load_curriculum(args.source, split=split, config=config, num_episodes=args.num_episodes)
            except Exception as error:  # noqa: BLE001 -- one missing split should not hide the others
                print(f"{config:<11}{split:<11}  unavailable: {error}")
                failed.append(f"{config}/{split}")
                continue
            if not len(data):
                print(f"{config:<11}{split:<11}{0:>8}")
                continue
            sample = sample or (config, split, data[0])
            turns = [i for e in data for i in e.all_interactions()]
            follow_ups = [e.num_follow_ups for e in data]
            tokens = [q + a for q, a in token_lengths(data, tokenizer)]  # what load_curriculum's report counts
            over = sum(n > args.max_length for n in tokens)
            print(f"{config:<11}{split:<11}{len(data):>8}{min(follow_ups):>5}-{max(follow_ups):<5}  "
                  f"{_stats([len(i.query.split()) for i in turns]):>16}  "
                  f"{_stats([len(i.answer.split()) for i in turns]):>16}  {_stats(tokens):>18}  "
                  f"{over}/{len(tokens)}")
    if sample:
        _print_episode(*sample)
    if failed:
        print(f"error: {len(failed)} of {len(configs) * len(splits)} splits could not be read ({', '.join(failed)}); "
              "see the lines above", file=sys.stderr)
        return 2
    return 0


def _print_episode(config: str, split: str, episode) -> None:
    print(f"\nsample episode ({config}/{split}, strategy {episode.strategy}):")
    print(f"  saved   Q: {episode.query}\n          A: {episode.answer}")
    for j, interaction in enumerate(episode.interactions):
        facts = episode.facts[j] if episode.facts is not None else None
        marks = "" if facts is None else "  facts: " + (", ".join(f"{f.text!r}@{f.source}" for f in facts) or "-")
        print(f"  step {j:<3} Q: {interaction.query}\n          A: {interaction.answer}{marks}")


# ---------------------------------------------------------------------------------------------- tokenizer

def _texts_of(path: Path) -> list[str]:
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from rxmrl.data.curriculum import _read_files

    texts = []
    for row in _read_files([path]):
        if "text" in row:
            texts.append(row["text"])
        if "query" in row:
            texts.append(f"{row['query']}\n{row.get('answer', '')}")
        texts += [f"{i['query']}\n{i['answer']}" for i in row.get("interactions") or []]
    if not texts:
        raise ValueError(f"{path} has no text: expected rows with 'text', or 'query'/'answer' fields")
    return texts


def _train_tokenizer(args: argparse.Namespace) -> int:
    from rxmrl.data.embedded_tokenizer import embedded_corpus
    from rxmrl.tokenizer import train_tokenizer

    texts = [t for path in args.inputs for t in _texts_of(path)] if args.inputs else embedded_corpus()
    tokenizer = train_tokenizer(texts, args.vocab_size, args.min_frequency)
    path = tokenizer.save(args.out)
    print(f"{path}: vocab {tokenizer.vocab_size} from {len(texts)} texts")
    return 0
