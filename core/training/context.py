"""What every objective shares with the loop: the run's context and the metric tally."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from core.models.batching import Batch, Seq, collate, token_parts


class PreparationCancelled(Exception):
    """The run's cancel flag was set while it was still preparing (before its first step)."""


class Tally:
    """Running (sum, count) per metric over the micro-batches of a step (and, reduced, ranks)."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self.sums = dict.fromkeys(self.names, 0.0)
        self.counts = dict.fromkeys(self.names, 0.0)

    def add(self, name: str, values: torch.Tensor | float, weight: float = 1.0) -> None:
        """Per-item values (a tensor: each item counts once), or one value with a ``weight``."""
        if torch.is_tensor(values) and values.numel() != 1:
            values = values.detach().float().flatten()
            self.sums[name] += float(values.sum())
            self.counts[name] += values.numel()
        else:
            value = float(values.detach()) if torch.is_tensor(values) else float(values)
            self.sums[name] += value * weight
            self.counts[name] += weight

    def means(self, accelerator: Any = None) -> dict[str, float]:
        """Means per metric; across ranks too when ``accelerator`` runs several processes."""
        sums = torch.tensor([self.sums[n] for n in self.names], dtype=torch.float64)
        counts = torch.tensor([self.counts[n] for n in self.names], dtype=torch.float64)
        if accelerator is not None and accelerator.num_processes > 1:
            both = accelerator.reduce(torch.stack([sums, counts]).to(accelerator.device), "sum")
            sums, counts = both[0].cpu(), both[1].cpu()
        return {n: float(s / c) for n, s, c in zip(self.names, sums, counts, strict=True) if c > 0}


@dataclass
class Context:
    """What objectives share with the loop: the store, config, model and the process layout."""

    store: Any
    config: Any
    accelerator: Any
    tokenizer: Any
    model: Any  # the unwrapped trainable model (a peft model under LoRA)
    rating_ids: list[int] | None  # the ratings snapshot this run may train on
    module: Any = None  # the forward module the loop trains (DDP-wrapped under accelerate)
    extras: dict[str, Any] = field(default_factory=dict)
    cancel: Any = None  # threading.Event: set to stop the run; long preparations look at it

    def check_cancel(self) -> None:
        """Raise ``PreparationCancelled`` if the run was asked to stop (between forward passes)."""
        if self.cancel is not None and self.cancel.is_set():
            raise PreparationCancelled

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else self.tokenizer.eos_token_id

    def collate(self, seqs: Sequence[Seq]) -> Batch:
        return collate(seqs, self.pad_id, self.device)

    @contextmanager
    def reference(self) -> Iterator[None]:
        """The reference model: the adapter switched off under LoRA; otherwise the model as it is
        now, which is the reference only before the first optimizer step."""
        ctx = self.model.disable_adapter() if hasattr(self.model, "peft_config") else nullcontext()
        was_training = self.model.training
        self.model.eval()
        try:
            with ctx, self.accelerator.autocast():  # the same precision as the training forward
                yield
        finally:
            self.model.train(was_training)

    def parts(
        self,
        items: Sequence[int],
        lengths: Sequence[int],
        seqs_per_item: int,
        budget_factor: int = 1,
    ) -> list[list[int]]:
        """``items`` in forward passes of at most ``forward_tokens`` (times the factor) tokens."""
        budget = self.config.forward_tokens * budget_factor
        return token_parts(items, lengths, seqs_per_item, budget)

    def reference_pass(
        self,
        indices: Sequence[int],
        lengths: Sequence[int],
        fn: Callable[[list[int]], list[torch.Tensor]],
        seqs_per_item: int = 1,
        check_cancel: bool = False,
    ) -> dict[int, torch.Tensor]:
        """``fn`` over example ``indices`` under the reference model: index -> its result.

        Inference mode and the model in eval mode, so no gradient is tracked and no activation
        is recomputed (transformers checkpoints layers only in training mode with gradients on).
        Examples go in length order (little padding), in passes of bounded size (no activations
        are kept, so twice the training budget). With ``check_cancel`` it looks at the cancel
        flag before every pass (a long pass before the first step must not delay Stop).
        """
        out: dict[int, torch.Tensor] = {}
        with torch.inference_mode(), self.reference():
            for chunk in self.parts(indices, lengths, seqs_per_item, budget_factor=2):
                if check_cancel:
                    self.check_cancel()
                out.update(zip(chunk, [t.detach().cpu() for t in fn(chunk)], strict=True))
        # inference tensors cannot enter autograd: clone them outside inference mode
        return {i: t.clone() for i, t in out.items()}
