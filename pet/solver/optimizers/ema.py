"""Weight EMA: an exponential moving average of a model's parameters and floating-point buffers.

After optimizer update n (counting the average's own updates from 1), every averaged tensor moves as
average <- d * average + (1 - d) * tensor, with d = DECAY * (1 - exp(-n / WARMUP_ITERS)) (the YOLO family's ramp,
so that the average follows the fast early changes; WARMUP_ITERS 0: d = DECAY throughout). All tensors move in one
`torch._foreach_lerp_` call; integer buffers (batch-norm counters) are copied. The average lives beside the
model's own tensors (no copy of the module, so a DDP- or FSDP-wrapped model works alike) and is swapped into the
model to evaluate it.
"""
import contextlib
from typing import Any, Dict, Iterator, Optional

import torch
from torch import nn

from pet.solver.optimizers.shards import local_shards
from pet.state_fields import require_fields


class WeightEMA:
    """The average of `model`'s parameters and floating-point buffers.

    Args:
        model: the (unwrapped) module whose tensors are averaged.
        decay: the decay once the ramp is over.
        warmup_iters: the ramp's time constant in average updates (0: no ramp).

    Example:
        >>> ema = WeightEMA(model, decay=0.9998, warmup_iters=2000)
        >>> loss.backward(); optimizer.step(); ema.update()
        >>> with ema.swapped_in():  # evaluate the average
        ...     evaluate(model)
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup_iters: int = 2000) -> None:
        if not 0 <= decay < 1 or warmup_iters < 0:
            raise ValueError(f"decay must be in [0, 1) and warmup_iters >= 0; got {decay}, {warmup_iters}")
        self.decay, self.warmup_iters = decay, warmup_iters
        named = [(name, p) for name, p in model.named_parameters()] + [
            (name, b) for name, b in model.named_buffers() if b.numel()]
        self.names = [name for name, t in named if t.is_floating_point()]
        self.tensors = [t for _, t in named if t.is_floating_point()]
        self.copied_names = [name for name, t in named if not t.is_floating_point()]
        self.copied = [t for _, t in named if not t.is_floating_point()]
        self.average = [t.detach().clone() for t in self.tensors]
        self.average_copied = [t.detach().clone() for t in self.copied]
        self.device = (self.tensors or self.copied)[0].device
        # The average's own update count, on the device: updates may be counted from flags the host never reads.
        self._updates = torch.zeros((), dtype=torch.float64, device=self.device)

    @property
    def updates(self) -> int:
        """The average's updates so far (reading it waits for the device)."""
        return int(self._updates.item())

    @torch.no_grad()
    def update(self, taken: Optional[torch.Tensor] = None) -> None:
        """Move the average towards the model's current tensors: after a real optimizer update, or, with `taken` (a
        0-dim 0/1 tensor), only where it is 1, decided on the device without a host read."""
        taken = torch.ones((), device=self.device) if taken is None else taken.to(self.device)
        self._updates += taken
        n = self._updates
        decay = self.decay * -torch.expm1(-n / self.warmup_iters) if self.warmup_iters \
            else torch.full_like(n, self.decay)
        weight = ((1.0 - decay) * taken).float()
        # Sharded (FSDP) parameters and their averages are moved shard by shard, beside the plain buffers.
        torch._foreach_lerp_(local_shards(self.average)[0], local_shards([t.detach() for t in self.tensors])[0],
                             weight)
        keep = taken.bool()
        for average, tensor in zip(self.average_copied, self.copied):
            average.copy_(torch.where(keep, tensor, average))

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """Within the block the model holds the average; its own tensors come back afterwards."""
        tensors = local_shards([t.detach() for t in self.tensors + self.copied])[0]
        average = local_shards(self.average + self.average_copied)[0]
        own = [t.clone() for t in tensors]
        torch._foreach_copy_(tensors, average)
        try:
            yield
        finally:
            torch._foreach_copy_(tensors, own)

    def averaged_state(self) -> Dict[str, torch.Tensor]:
        """The average as a state dict of the model (its integer buffers included)."""
        return dict(zip(self.names + self.copied_names, self.average + self.average_copied))

    def state_dict(self) -> Dict[str, Any]:
        """The average and its update count, which a resumed run continues."""
        return {"updates": self.updates, "average": self.averaged_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue the average of `state_dict()`; a different model's is a ValueError naming the tensors."""
        require_fields(state, {"average": dict, "updates": int}, "weight EMA")
        saved = state["average"]
        names = self.names + self.copied_names
        if sorted(saved) != sorted(names):
            missing, unexpected = sorted(set(names) - set(saved)), sorted(set(saved) - set(names))
            raise ValueError(f"the EMA holds other tensors (missing {missing[:3]}, unexpected {unexpected[:3]})")
        with torch.no_grad():
            for name, tensor in zip(names, self.average + self.average_copied):
                tensor.copy_(saved[name])
        self._updates.fill_(state["updates"])

