"""Test-wide settings.

The hub variables are set before anything imports ``huggingface_hub`` or ``datasets``: these machines
have no internet, and hub calls would otherwise hang for a minute before failing.
"""

import os

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
