"""One run on several processes: what each holds, what they agree on, and who writes.

A run on N processes is the run of one process at N times the batch: each optimizer step's global
batches are the same (engine.train.batching, a pure function of the seed), each process takes
every N-th example of them, and the loss of each is divided by the trained tokens of the whole
global step, so the gradients DDP averages add up to the one-process gradient.

Every process keeps the same bookkeeping from values they agree on (the step's loss and tokens,
a stop request, the validation loss), so they evaluate, save, stop early and fail at the same
step without asking each other; only rank 0 writes the run directory. With one process
(`SINGLE`) nothing here touches torch.distributed, and the step pays one attribute check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from engine.train.loss import token_loss_sum
from engine.train.methods import trainable_named


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run."""

    rank: int = 0
    world: int = 1
    strategy: str = ""
    """"ddp" or "fsdp" with several processes; "" for one."""
    device: str = "cpu"
    """Where the agreement tensors live: "cuda" under NCCL, "cpu" under gloo."""
    report: Callable[[Any], None] | None = None
    """Takes this process's TrainFailed when it fails; the launcher says which one failed first."""

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes run.json, metrics, checkpoints and the adapter."""
        return self.rank == 0

    def agree(self, loss_sum: float, tokens: int, stop: bool,
              sums: tuple[float, ...] = ()) -> tuple[float, int, bool, tuple[float, ...]]:
        """The step's loss sum, tokens and the objective's metric `sums` over every process, and
        whether any was asked to stop: one all_reduce per step, so every process stops after the same step."""
        if self.world == 1:
            return loss_sum, tokens, stop, sums
        import torch
        import torch.distributed as dist

        values = torch.tensor([loss_sum, float(tokens), float(stop), *sums], dtype=torch.float64, device=self.device)
        dist.all_reduce(values)
        total, count, stops, *summed = values.tolist()
        return total, int(count), stops > 0, tuple(summed)

    def same(self, value: float) -> float:
        """Rank 0's value on every process (a validation loss every process must decide on alike)."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def share(self, text: str) -> str:
        """Rank 0's text on every process (the run directory it created), sent as UTF-8 bytes in a
        tensor: never a pickle, which a process would run whatever it held."""
        if self.world == 1:
            return text
        import torch
        import torch.distributed as dist

        data = text.encode("utf-8") if self.rank == 0 else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        dist.broadcast(size, src=0)
        buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=self.device)
        if self.rank == 0:
            buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        dist.broadcast(buffer, src=0)
        return bytes(buffer.cpu().tolist()).decode("utf-8")


SINGLE = Ranks()


def wrap(model: Any, fast: bool, ranks: Ranks, adapters: bool = False,
         loss_of: Callable[[Any, dict[str, Any], bool], Any] = token_loss_sum,
         ) -> tuple[Callable[[dict[str, Any]], Any], Callable[[], Any]]:
    """(loss of a batch, context that holds back gradient sync) for the model on these ranks.

    DDP hooks its gradient all-reduce on its own forward, so the whole loss, the chunked projection
    included, runs inside the wrapped module's forward. Micro-batches but the last of a step run
    under `no_sync`: one all-reduce per optimizer step. Under FSDP2 each decoder layer and then the
    root are `fully_shard`ed in place, so the optimizer must be built afterwards. When only
    `adapters` train, FSDP holds back its reduce-scatter the same way: their whole gradients are
    small, so each process adds them up until the step's last micro-batch. Full fine-tuning
    reduce-scatters every micro-batch, since whole gradients of every weight are what FSDP saves.
    `loss_of(model, batch, fast)` is the objective's loss (engine.train.objectives), run inside that forward.
    """
    if ranks.world == 1:
        return (lambda batch: loss_of(model, batch, fast)), contextlib.nullcontext
    import torch

    class TokenLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, batch: dict[str, Any]) -> Any:
            return loss_of(self.model, batch, fast)

    module = TokenLoss()
    if ranks.strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _decoder_layers(model):
            fully_shard(layer)
        fully_shard(module)
        return module, (lambda: _gradient_sync_held(module)) if adapters else contextlib.nullcontext
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # Gradients as views of DDP's buckets: no second copy of them. Buffers (rotary tables) are
    # the same on every process, so they are not synced at each forward (torch 2.13 renamed it).
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    ddp = DistributedDataParallel(module, gradient_as_bucket_view=True,
                                  **{"forward_sync_buffers" if renamed else "broadcast_buffers": False})
    return ddp, ddp.no_sync


@contextlib.contextmanager
def _gradient_sync_held(module: Any) -> Iterator[None]:
    """FSDP2's `no_sync`: the micro-batches inside keep their gradients unsharded, added up."""
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def whole_weights(model: Any, ranks: Ranks) -> dict[str, Any] | None:
    """The trainable weights, whole and on the CPU, for rank 0 to write; None on the others.
    Under FSDP every process must call it: it gathers the shards."""
    if ranks.strategy != "fsdp":
        return {k: v.detach().contiguous().cpu() for k, v in trainable_named(model).items()} if ranks.main else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                  ignore_frozen_params=True))
    return {k: v.contiguous() for k, v in state.items()} if ranks.main else None


def whole_optimizer(model: Any, optimizer: Any, ranks: Ranks) -> dict[str, Any] | None:
    """The optimizer state for rank 0 to write; under FSDP gathered whole and keyed by parameter
    name (the others' is keyed by position), so any number of FSDP processes can load it."""
    if ranks.strategy != "fsdp":
        return optimizer.state_dict() if ranks.main else None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                                 cpu_offload=True))
    return state if ranks.main else None


def load_sharded(model: Any, optimizer: Any, weights: dict[str, Any], optimizer_state: dict[str, Any]) -> None:
    """Whole weights and optimizer state, as `whole_weights` and `whole_optimizer` wrote them, into
    this process's FSDP shards."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)


def _decoder_layers(model: Any) -> list[Any]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(base.get_decoder().layers)
