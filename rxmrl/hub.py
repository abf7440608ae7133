"""Where a model lives: a local folder, or a hub repository downloaded into the local cache.

One place decides how a name becomes a folder, so every loader (our ``from_pretrained``, the converters of
the reference formats) takes a local path or a hub id alike and fails the same way offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0")


def local_folder(name_or_path: str | os.PathLike, patterns: Sequence[str] | None = None) -> Path:
    """``name_or_path`` if it is a local folder, else a snapshot of that hub repo (only ``patterns``).

    Gated repositories need the user's token (``huggingface-cli login`` or ``HF_TOKEN``).
    """
    from rxmrl.runtime import recover

    directory = Path(name_or_path)
    recover(directory)  # a folder a killed writer had moved aside
    if directory.is_dir():
        return directory
    if offline():
        from rxmrl.runtime import MissingInput

        raise MissingInput(f"{name_or_path!s} is not a local directory and HF_HUB_OFFLINE is set, so it "
                           "cannot be fetched from the hub")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(name_or_path), allow_patterns=list(patterns) if patterns else None))
