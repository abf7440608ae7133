"""One writer of ``model.safetensors``: the same weights give the same bytes, every time.

``safetensors.torch.save_model`` stores a tied tensor once and records each dropped name in the file's
metadata. The metadata is a hash map on the library's Rust side, so with two or more tied names (the shared
embedding is tied three ways) their order in the header changes from one process to the next, and two
identical runs write files whose checksums differ. Here the tied names are dropped without a record (the
loader, ``safetensors.torch.load_model``, finds the ties from the model itself) and the metadata holds a
single entry, so the header is fixed by the tensors alone.
"""

from __future__ import annotations

import os

from torch import nn

FORMAT_METADATA = {"format": "pt"}  # one entry: a map of one key has one order


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Write ``model``'s weights to ``path`` as safetensors: each tied tensor once (under the name that sorts
    first), contiguous, with a header that depends only on the weights."""
    from safetensors.torch import save_file

    state = model.state_dict()
    kept: dict[tuple, str] = {}
    for name in sorted(state):
        tensor = state[name]
        view = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tensor.stride())
        kept.setdefault(view, name)
    save_file({name: state[name].contiguous() for name in sorted(kept.values())}, str(path),
              metadata=FORMAT_METADATA)
