"""Test-wide settings.

The hub variables are set before anything imports ``huggingface_hub`` or ``datasets``: these machines
have no internet, and hub calls would otherwise hang for a minute before failing.
"""

import os

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
