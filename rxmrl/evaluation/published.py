"""The published reward range of the RxT paper, shown beside our numbers (never mixed with them).

The RxT paper reports the MRL reward (0-10) over 8+1-step episodes (a saved interaction, then 8 follow-ups)
for a Reactive Transformer and a stateless LLM of similar size. Its models, data and reward are not ours:
these rows are a reference point for the *shape* of the comparison, not a target our numbers can match.
"""

from __future__ import annotations

from dataclasses import dataclass

PUBLISHED_NOTE = ("published rows: RxT paper, 8+1-step episodes, their data, reward and model sizes "
                  "(not comparable number for number with ours)")


@dataclass(frozen=True)
class PublishedRow:
    model: str
    reward_mean: float
    reward_min: float
    reward_max: float


PUBLISHED_ROWS: tuple[PublishedRow, ...] = (
    PublishedRow("RxT-Alpha Mini (published)", 3.7, 1.8, 6.2),
    PublishedRow("22M stateless LLM (published)", 2.4, 1.4, 4.0),
)


def format_published_rows(label_width: int = 34) -> str:
    """The published rows as their own small table, under a header that says what they are."""
    lines = [PUBLISHED_NOTE + ":", f"{'model':<{label_width}}{'reward mean':>12}{'min':>7}{'max':>7}"]
    for row in PUBLISHED_ROWS:
        lines.append(f"{row.model:<{label_width}}{row.reward_mean:>12.2f}{row.reward_min:>7.2f}{row.reward_max:>7.2f}")
    return "\n".join(lines)
