"""What torch really allocates on the CPU: live and peak bytes of every tensor storage an op creates.

CPU tensors have no allocator statistics like `torch.cuda.max_memory_allocated`, so a dispatch
mode sees every op's outputs and a weak reference to each new storage says when it is freed.
Views of storages that existed before are not new memory and are not counted.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class PeakAllocated(TorchDispatchMode):
    """`with PeakAllocated() as mem: ...` then `mem.peak` (bytes above what was live on entry)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, Any] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0 or key in inputs or key in self._refs:
                continue
            size = storage.nbytes()
            self.live += size
            self.peak = max(self.peak, self.live)
            self._refs[key] = weakref.ref(storage, self._freed(key, size))
        return out

    def _freed(self, key: int, size: int):
        def gone(_: Any) -> None:
            self.live -= size
            self._refs.pop(key, None)
        return gone


def tensor_bytes(tensors) -> int:
    """Bytes of distinct storages among `tensors` (tied weights count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
