"""Reference log-probs per example: computed when training first needs them, kept for the run.

The reference model never changes, so an example's reference log-probs are computed once per run
and kept (later epochs reuse them) and saved with every checkpoint (a resumed run loads them).
Only what training uses is computed: with LoRA the reference (the adapter switched off) is there
at any step, so each step computes the examples it is the first to use; with full fine-tuning the
weights are the reference only before the first optimizer step, so the examples the run's planned
steps use are computed before it (never the examples no step uses).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch


class ReferenceLogps:
    """Per-example reference log-probs (one tensor per example index) with the work that makes
    them: ``compute(indices)`` returns one tensor per index and runs under the reference model
    (core.training.context.Context.reference_pass)."""

    def __init__(
        self,
        compute: Callable[[list[int]], list[torch.Tensor]],
        lengths: Sequence[int],
        seqs_per_item: int = 1,
    ):
        self.compute = compute
        self.lengths = list(lengths)
        self.seqs_per_item = seqs_per_item
        self.values: dict[int, torch.Tensor] = {}
        self.computed: list[int] = []  # indices this process computed, in order (not loaded)

    def ensure(self, ctx: Any, indices: Iterable[int], check_cancel: bool = False) -> None:
        """Compute the reference log-probs of ``indices`` that are not known yet (this rank's)."""
        missing = sorted(set(indices) - self.values.keys())
        if not missing:
            return
        self.values.update(
            ctx.reference_pass(
                missing, self.lengths, self.compute, self.seqs_per_item, check_cancel
            )
        )
        self.computed += missing

    def start(self, ctx: Any, planned: Iterable[int]) -> None:
        """Before the first step: the ``planned`` examples now if only the starting weights are
        the reference (full fine-tuning), stoppable; with an adapter each step computes its own
        (a step's worth, as long as a step: the loop's Stop waits for it like for a step)."""
        if not hasattr(ctx.model, "peft_config"):
            self.ensure(ctx, planned, check_cancel=True)

    def stacked(self, indices: Sequence[int]) -> torch.Tensor:
        """(len(indices), ...) of same-shaped per-example values."""
        return torch.stack([self.values[i] for i in indices])

    def rows(self, indices: Sequence[int]) -> list[torch.Tensor]:
        return [self.values[i] for i in indices]

    # ---- with the checkpoint ---------------------------------------------------------------------
    def fingerprint(self) -> str:
        """What the examples were: a resumed run with other examples must not reuse the values."""
        text = json.dumps([self.seqs_per_item, self.lengths])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def gathered(self, accelerator: Any) -> dict[int, torch.Tensor]:
        """Every rank's values (each rank computes those of its own share of the batches)."""
        if accelerator is None or accelerator.num_processes <= 1:
            return dict(self.values)
        from accelerate.utils import gather_object

        pairs = gather_object([(i, t.tolist()) for i, t in self.values.items()])
        return {i: torch.tensor(v) for i, v in pairs}

    def load(self, values: dict[int, torch.Tensor]) -> None:
        """Values a checkpoint of this run saved (core.training.resume.load_reference_logps)."""
        self.values.update({i: t for i, t in values.items() if 0 <= i < len(self.lengths)})
