"""Curriculum sources: the embedded generator, local files and folders, and Hugging Face hub ids.

Every source ends in the same validated :class:`Episode` rows, so the environment and the trainers never
care where the data came from. ``source`` is read as:

- ``"embedded"`` -- generated on demand by :mod:`rxmrl.data.storygen` (no files, no network);
- a path to a ``.jsonl`` / ``.json`` / ``.parquet`` file -- one split of one config, in the published schema;
- a path to a folder -- ``DIR/steps-N/{split}.parquet`` as ``rxmrl data generate`` writes it, or the
  hub's layout ``DIR/steps-N/{split}-00000-of-00001.parquet`` (jsonl works too); its ``DIR/stories/`` and
  ``DIR/sft/`` hold the plain stories and single interactions (else ``DIR/{split}.*`` does), so one
  generated folder feeds all four supervised stages;
- anything else -- a hub id, loaded with ``datasets.load_dataset(id, "steps-N", split=...)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rxmrl.data import storygen
from rxmrl.data.schema import (
    CurriculumValidationError, Episode, Interaction, check_split, config_name, parse_config, validate_rows,
)

EMBEDDED = "embedded"
HUB_CURRICULUM = "ReactiveAI/TinyStories-MRL"
HUB_INTERACTIONS = "ReactiveAI/TinyStories-Interaction-SFT"
HUB_STORIES = "roneneldan/TinyStories"
_FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


class InteractionTokenizer(Protocol):
    def encode_query(self, text: str) -> list[int]: ...
    def encode_answer(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class TruncationReport:
    """How many texts exceed ``max_length`` tokens (with their special tokens); nothing is dropped."""

    max_length: int
    queries: int  # follow-up and saved queries longer than max_length
    answers: int
    interactions: int  # query + answer longer than max_length (what the memory encoder reads)
    total: int  # interactions counted (saved + follow-ups)
    longest_interaction: int

    def __str__(self) -> str:
        return (f"{self.interactions}/{self.total} interactions exceed {self.max_length} tokens "
                f"(queries {self.queries}, answers {self.answers}; longest {self.longest_interaction})")


@dataclass
class CurriculumSplit(Sequence[Episode]):
    """Validated episodes of one config and split, with where they came from."""

    episodes: list[Episode]
    config: str
    split: str
    source: str
    truncation: TruncationReport | None = None

    @property
    def steps(self) -> int:
        return parse_config(self.config)[0]

    @property
    def long_range(self) -> bool:
        return parse_config(self.config)[1]

    def __len__(self) -> int:
        return len(self.episodes)

    def __getitem__(self, index):  # type: ignore[override]
        return self.episodes[index]

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)


def resolve_config(steps: int | None, long_range: bool, config: str | None) -> str:
    if config is not None:
        parse_config(config)
        return config
    if steps is None:
        raise CurriculumValidationError("give steps=N or config='steps-N' (e.g. steps=4 or config='steps-8-lr')")
    return config_name(steps, long_range)


def load_curriculum(source: str | os.PathLike = EMBEDDED, steps: int | None = None, split: str = "train", *,
                    long_range: bool = False, config: str | None = None, num_episodes: int | None = None,
                    seed: int = 0, tokenizer: InteractionTokenizer | None = None,
                    max_length: int | None = None) -> CurriculumSplit:
    """Validated episodes of ``config`` (or ``steps`` + ``long_range``) and ``split`` from ``source``.

    ``num_episodes`` keeps the first rows of a file source and sets the size of an embedded one. With a
    ``tokenizer`` and ``max_length`` the result carries a :class:`TruncationReport`.
    """
    config = resolve_config(steps, long_range, config)
    check_split(split)
    name = str(source)
    if name == EMBEDDED:
        episodes = storygen.generate_episodes(config, split, num_episodes, seed)
    else:
        rows = _load_rows(name, config, split)
        if num_episodes is not None:
            rows = rows[:num_episodes]
        episodes = validate_rows(rows, config, split, name)
    report = truncation_report(episodes, tokenizer, max_length) if tokenizer and max_length else None
    return CurriculumSplit(episodes, config, split, name, report)


def load_interactions(source: str | os.PathLike = EMBEDDED, split: str = "train", *,
                      num_interactions: int | None = None, seed: int = 0) -> list[Interaction]:
    """Single (query, answer) interactions for interaction SFT (rows ``query``, ``answer``)."""
    if str(source) == EMBEDDED:
        return storygen.generate_interactions(split, num_interactions or 10_000, seed)
    return [Interaction(*texts) for texts in _corpus_texts(str(source), "sft", split, num_interactions)]


def load_stories(source: str | os.PathLike = EMBEDDED, split: str = "train", *,
                 num_stories: int | None = None, seed: int = 0) -> list[str]:
    """Plain stories for LM pre-training (rows ``text``)."""
    if str(source) == EMBEDDED:
        return storygen.generate_stories(split, num_stories or 5_000, seed)
    return [texts[0] for texts in _corpus_texts(str(source), "stories", split, num_stories)]


_CORPUS_FIELDS = {"sft": ("interaction", ("query", "answer")), "stories": ("story", ("text",))}


def _corpus_texts(name: str, corpus: str, split: str, count: int | None) -> list[list[str]]:
    """The first ``count`` rows of a corpus (``sft`` or ``stories``) of a file source, each row's text fields
    checked non-empty: an error names the row, the split, the source and the field."""
    what, fields = _CORPUS_FIELDS[corpus]
    rows = _load_rows(name, _corpus_folder(name, corpus), split)[:count]
    texts = []
    for i, row in enumerate(rows):
        values = [row.get(field) if isinstance(row, dict) else None for field in fields]
        for field, value in zip(fields, values):
            if not isinstance(value, str) or not value.strip():
                raise CurriculumValidationError(f"{what} {i} of {split} ({name}) has field '{field}' = "
                                                f"{value!r:.40}, expected non-empty text")
        texts.append(values)
    return texts


def token_lengths(episodes: Sequence[Episode], tokenizer: InteractionTokenizer) -> list[tuple[int, int]]:
    """``(query, answer)`` lengths in tokens, special tokens included, of every interaction in order.

    A tokenizer with ``encode_batch`` is called once per column (the format's special tokens are measured
    as the length of an empty query/answer); otherwise text by text.
    """
    turns = [i for episode in episodes for i in episode.all_interactions()]
    encode_batch = getattr(tokenizer, "encode_batch", None)
    if encode_batch is None:
        return [(len(tokenizer.encode_query(t.query)), len(tokenizer.encode_answer(t.answer))) for t in turns]
    query_extra, answer_extra = len(tokenizer.encode_query("")), len(tokenizer.encode_answer(""))
    queries = encode_batch([t.query for t in turns])
    answers = encode_batch([t.answer for t in turns])
    return [(len(q) + query_extra, len(a) + answer_extra) for q, a in zip(queries, answers)]


def truncation_report(episodes: Sequence[Episode], tokenizer: InteractionTokenizer,
                      max_length: int) -> TruncationReport:
    lengths = token_lengths(episodes, tokenizer)
    return TruncationReport(
        max_length,
        queries=sum(q > max_length for q, _ in lengths),
        answers=sum(a > max_length for _, a in lengths),
        interactions=sum(q + a > max_length for q, a in lengths),
        total=len(lengths),
        longest_interaction=max((q + a for q, a in lengths), default=0),
    )


# ---------------------------------------------------------------------------------------------- reading

def _corpus_folder(source: str, name: str) -> str | None:
    """``name`` when ``source`` is a folder with that sub-folder (as ``rxmrl data generate`` writes it)."""
    return name if (Path(source).expanduser() / name).is_dir() else None


INCOMPLETE = "INCOMPLETE"  # in a dataset folder while ``rxmrl data generate`` writes it; removed at its end


def mark_incomplete(folder: Path) -> Path:
    """Mark ``folder`` as a dataset being written, before its first file: a killed writer leaves the mark,
    and readers refuse the partial dataset instead of training on it."""
    from rxmrl.runtime import write_text

    return write_text(folder / INCOMPLETE, "rxmrl data generate started writing this dataset and has not "
                                           "finished; run it again to complete it\n")


def refuse_incomplete(path: Path) -> None:
    """Refuse a dataset folder (or a file in one, up to two levels down) that still carries the mark."""
    for folder in [path, *list(path.parents)[:2]]:
        if (folder / INCOMPLETE).is_file():
            raise CurriculumValidationError(f"{folder} is an incomplete dataset (its {INCOMPLETE} file says "
                                            "`rxmrl data generate` did not finish): run that command again")


def _load_rows(source: str, config: str | None, split: str) -> list[dict[str, Any]]:
    path = Path(source).expanduser()
    if path.exists():
        refuse_incomplete(path)
    if path.is_file():
        return _read_files([path])
    if path.is_dir():
        return _read_files(_split_files(path, config, split))
    if source.startswith((".", "/", "~")) or source.endswith(tuple(_FILE_BUILDERS)):
        raise FileNotFoundError(f"curriculum source {source!r} does not exist (expected a file, a folder, "
                                f"'{EMBEDDED}' or a hub id like '{HUB_CURRICULUM}')")
    return _load_hub(source, config, split)


def _split_files(folder: Path, config: str | None, split: str) -> list[Path]:
    """``folder/config/split.*`` or ``folder/config/split-*-of-*.*`` (config is skipped for flat corpora)."""
    directory = folder / config if config else folder
    if config and not directory.is_dir():
        available = sorted(p.name for p in folder.iterdir() if p.is_dir())
        raise CurriculumValidationError(f"unknown config {config!r} in {folder}: available {available}")
    for suffix in _FILE_BUILDERS:
        files = sorted(directory.glob(f"{split}{suffix}")) or sorted(directory.glob(f"{split}-*{suffix}"))
        if files:
            return files
    present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    raise CurriculumValidationError(f"no '{split}' split in {directory}: expected {split}.parquet, "
                                    f"{split}.jsonl or {split}-00000-of-00001.parquet; found {present}")


def _read_files(files: list[Path]) -> list[dict[str, Any]]:
    import datasets

    suffixes = {f.suffix for f in files}
    if len(suffixes) != 1 or not suffixes <= set(_FILE_BUILDERS):
        raise CurriculumValidationError(f"cannot read {[str(f) for f in files]}: expected "
                                        f"{', '.join(_FILE_BUILDERS)} files of one kind")
    bars_were_on = datasets.is_progress_bar_enabled()  # a bar per small local file is noise; restore it after
    datasets.disable_progress_bars()
    verbosity = datasets.logging.get_verbosity()  # its own log of a bad file would be a second error line
    datasets.logging.set_verbosity(datasets.logging.CRITICAL + 1)
    try:
        dataset = datasets.load_dataset(_FILE_BUILDERS[files[0].suffix], data_files=[str(f) for f in files],
                                        split="train")
        return dataset.to_list()  # arrow keeps bad UTF-8 bytes until the strings are decoded here
    except Exception as error:  # noqa: BLE001 -- datasets' own errors name neither the file nor the row
        raise CurriculumValidationError(_unreadable(files, error)) from error
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def _unreadable(files: list[Path], error: Exception) -> str:
    """Which file, and which line of it, stopped ``datasets`` (an empty file, bad bytes, a cut-off line)."""
    for file in files:
        data = file.read_bytes()
        if not data.strip():
            return f"{file} is empty: expected one JSON object per line (or a parquet table)"
        if file.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                pq.read_metadata(file)
            except Exception as bad:  # noqa: BLE001
                return f"{file} is not a readable parquet file: {bad}"
            continue
        try:
            json.loads(data)  # one JSON document (a list of rows) is fine as a whole
            continue
        except ValueError:
            pass
        for number, line in enumerate(data.splitlines(), start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return (f"{file} line {number} is not valid UTF-8 (byte 0x{line[bad.start]:02x} at column "
                        f"{bad.start + 1}): expected UTF-8 JSON lines")
            try:
                json.loads(text) if text.strip() else None
            except ValueError as bad:
                return f"{file} line {number} is not valid JSON ({bad}): expected one JSON object per line"
    return f"cannot read {', '.join(map(str, files))}: {type(error).__name__}: {error}"


def _load_hub(repo_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    import datasets

    try:
        dataset = datasets.load_dataset(repo_id, config, split=split)
    except Exception as error:  # noqa: BLE001 -- re-raised with the context a user needs
        offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (offline mode is on: HF_DATASETS_OFFLINE/HF_HUB_OFFLINE=1)" if offline else ""
        raise CurriculumValidationError(
            f"could not load hub dataset {repo_id!r} config {config!r} split {split!r}{hint}: "
            f"{type(error).__name__}: {error}. Download it first, or pass '{EMBEDDED}' or a local "
            "file/folder") from error
    return dataset.to_list()


# ---------------------------------------------------------------------------------------------- writing

def episodes_table(episodes: Sequence[Episode]):
    """A pyarrow table in the published schema (``interactions: list<struct<answer, query>>``) + extras."""
    import pyarrow as pa

    interaction = pa.struct([("answer", pa.string()), ("query", pa.string())])
    fact = pa.struct([("text", pa.string()), ("source", pa.int64())])
    rows = [episode.to_row() for episode in episodes]
    columns = {
        "query": pa.array([r["query"] for r in rows], pa.string()),
        "answer": pa.array([r["answer"] for r in rows], pa.string()),
        "interactions": pa.array([r["interactions"] for r in rows], pa.list_(interaction)),
    }
    if any(e.facts is not None for e in episodes):
        columns["facts"] = pa.array([r.get("facts") for r in rows], pa.list_(pa.list_(fact)))
    if any(e.strategy is not None for e in episodes):
        columns["strategy"] = pa.array([r.get("strategy") for r in rows], pa.string())
    return pa.table(columns)


def write_episodes(episodes: Sequence[Episode], path: str | os.PathLike) -> Path:
    """Writes ``.parquet`` or ``.jsonl`` by the suffix of ``path`` (atomically); returns the path."""
    from rxmrl.runtime import atomic_file, write_text

    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        with atomic_file(path) as temporary:
            pq.write_table(episodes_table(episodes), temporary)
    elif path.suffix == ".jsonl":
        write_text(path, "".join(json.dumps(episode.to_row(), ensure_ascii=False) + "\n" for episode in episodes))
    else:
        raise ValueError(f"cannot write {path}: expected a .parquet or .jsonl path")
    return path
