"""Which saved data, reward mode and running mean score each step of an MRL episode.

Interactions are indexed as in :class:`rxmrl.data.Fact`: 0 is the saved first interaction, ``k >= 1`` is
follow-up ``k - 1``. Step ``i`` answers follow-up ``i``'s query; after it the agent writes interaction
``i + 1`` (follow-up ``i`` with its own answer, or the reference under teacher forcing) into memory.

Cumulative episodes (the published MRL semantics)::

    step i   mode        saved data S                      running mean M folded in before the step
    0        standard    interaction 0 (first)             none (first-step cosine factors)
    i >= 1   standard    interaction i (follow-up i-1,     + interaction i-1 (step 1: the first
                         as written into memory)             interaction; i >= 2: follow-up i-2 as written)

Long-range episodes replace two rows: step 0, the topic switch, is scored in ``negative`` mode against
interaction 0 (the answer must *not* copy it), and the final step in ``long_range`` mode against interaction
0 (the answer must come back to it, away from the running mean of the recent ones). Steps in between are
standard as above. Their running mean holds the interactions *after* the topic switch only: step 1 has none
(first-step factors) and step ``i >= 2`` folds interaction ``i - 1``. Folding the first interaction in as well
would make the final step's ``1 − cos(G, M)`` penalise the very interaction the answer must recall -- at
two steps, ``M`` would be the first interaction alone. The reference framework's trainer starts the mean at
the same step.

    long-range step i   mode         saved data S         running mean M folded in before the step
    0                   negative     interaction 0        none
    1                   standard     interaction 1        none (first-step cosine factors)
    2 <= i < steps-1    standard     interaction i        + interaction i-1
    steps-1             long_range   interaction 0        + interaction i-1 (steps = 2: none)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepSpec:
    """How step ``step`` is scored: its reward ``mode``, the interaction index of its saved data, and the
    interaction folded into the running mean just before it (``None``: no update)."""

    step: int
    mode: str
    saved_index: int
    running_mean_update: int | None

    @property
    def final_question(self) -> bool:
        """The long-range final question: it asks about the first interaction after every distractor turn, so
        its recall (``final_recall``) measures retention over the whole episode on its own."""
        return self.mode == "long_range"


def step_plan(steps: int, long_range: bool) -> tuple[StepSpec, ...]:
    """The scoring plan of an episode with ``steps`` follow-ups (see the module table)."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r}: expected a positive number of follow-ups")
    if long_range and steps < 2:
        raise ValueError(f"a long-range episode needs at least 2 steps (a topic switch and the final "
                         f"question), got steps={steps}")
    plan = []
    for i in range(steps):
        mode, saved = "standard", i
        if long_range and i == 0:
            mode, saved = "negative", 0
        elif long_range and i == steps - 1:
            mode, saved = "long_range", 0
        first_fold = 2 if long_range else 1  # long range: the mean starts after the topic switch
        plan.append(StepSpec(i, mode, saved, i - 1 if i >= first_fold else None))
    return tuple(plan)
