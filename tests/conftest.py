"""Test-wide settings.

The hub variables are set before anything imports ``huggingface_hub`` or ``datasets``: these machines
have no internet, and hub calls would otherwise hang for a minute before failing. ``OMP_NUM_THREADS`` is
set before anything imports torch (see below).
"""

import os

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models: one torch thread per process is faster than two fighting over the cores, and the suite runs two
# worker processes (pyproject's addopts). Set before torch loads, so the runs a test starts in a subprocess
# use the same thread count as the test itself (and the same floating-point sums).
os.environ.setdefault("OMP_NUM_THREADS", "1")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded default tokenizer (trained once, then cached on disk)."""
    from rxmrl.data import default_tokenizer

    return default_tokenizer()


@pytest.fixture(scope="session")
def nano(tokenizer):
    """The ``nano`` preset sized to the default tokenizer."""
    from rxmrl.model import get_preset

    return get_preset("nano", vocab_size=tokenizer.vocab_size)
