"""Token sequences, length-bucketed batches, and log-probs of completion tokens only.

Speed matters on a CPU, so three habits (their effect: docs/design.md):

- Pad to the longest sequence of *the batch*, never to ``max_length``; and batch sequences of
  similar length together (shuffle, then sort inside windows of a few batches), so little
  compute is spent on padding.
- Run the LM head only on positions that predict a completion token. A 49k-token vocabulary makes
  the head ~20% of a 135M model's forward and the (tokens, vocab) logits its largest activation;
  prompt positions never need them.
- Log-probs by ``gather`` minus ``logsumexp`` (core.losses.token_logps): no (tokens, vocab)
  log-softmax tensor is kept.

Shapes: ``B`` sequences, ``T`` padded length, ``N`` completion tokens in the batch (flat),
``L`` the longest completion, ``H`` hidden size, ``V`` vocabulary.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.losses import entropy_from_logits, token_logps
from core.models.tokens import format_prompt, tokenize


@dataclass
class Seq:
    """One training sequence: prompt tokens then completion tokens (prompt is never empty)."""

    prompt: list[int]
    completion: list[int]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.completion)


def fit(prompt: list[int], completion: list[int], max_length: int) -> Seq:
    """Cut a sequence to ``max_length``: the completion keeps up to 3/4 of it, the prompt its end."""
    if len(prompt) + len(completion) > max_length:
        completion = completion[: max(max_length - len(prompt), (3 * max_length) // 4)]
        prompt = prompt[len(prompt) - (max_length - len(completion)) :]
    return Seq(prompt, completion)


class Tokens:
    """Tokenizes each prompt (through its chat template) and each sample once, then caches."""

    def __init__(self, store: Any, tokenizer: Any, max_length: int, *, eos: bool):
        self.store, self.tok, self.max_length, self.eos = store, tokenizer, max_length, eos
        self._prompts: dict[int, list[int]] = {}
        self._samples: dict[int, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        return tokenize(self.tok, text, add_special_tokens=False)["input_ids"]

    def prompt(self, prompt_id: int) -> list[int]:
        if prompt_id not in self._prompts:
            ids = self.encode(format_prompt(self.tok, self.store.prompt_messages(prompt_id)))
            self._prompts[prompt_id] = ids or [self.tok.bos_token_id or self.tok.eos_token_id]
        return self._prompts[prompt_id]

    def completion(self, text: str) -> list[int]:
        """Response tokens; policies also learn to stop, so they get the end-of-turn token."""
        ids = self.encode(text)
        return ids + [self.tok.eos_token_id] if self.eos else ids

    def sample(self, sample_id: int) -> list[int]:
        if sample_id not in self._samples:
            text = self.store.sample_texts((sample_id,))[sample_id]
            self._samples[sample_id] = self.completion(text)
        return self._samples[sample_id]

    def seq(self, prompt_id: int, sample_id: int) -> Seq:
        return fit(self.prompt(prompt_id), self.sample(sample_id), self.max_length)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T) right-padded
    attention_mask: torch.Tensor | None  # (B, T); None when nothing is padded (faster attention)
    completion_mask: torch.Tensor  # (B, T) bool: the completion tokens
    lengths: torch.Tensor  # (B,) completion lengths
    n_tokens: int  # real (unpadded) tokens, for tokens/second

    @property
    def layout_mask(self) -> torch.Tensor:
        """(B, L) bool: slot l of row b holds a completion token (completion-only layout)."""
        longest = max(int(self.lengths.max()), 1)
        return torch.arange(longest, device=self.lengths.device)[None, :] < self.lengths[:, None]

    def rows(self, flat: torch.Tensor) -> torch.Tensor:
        """Flat per-token values (N,) → (B, L), row b's completion tokens left-aligned, 0 after."""
        mask = self.layout_mask
        return torch.zeros(mask.shape, dtype=flat.dtype, device=flat.device).masked_scatter(
            mask, flat
        )

    def sums(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-sequence sums of flat per-token values: (N,) → (B,)."""
        return self.rows(flat).sum(dim=-1)


def collate(seqs: Sequence[Seq], pad_id: int, device: torch.device | str) -> Batch:
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), longest), dtype=torch.long)
    completion = torch.zeros((len(seqs), longest), dtype=torch.bool)
    for i, s in enumerate(seqs):
        n, p = len(s), len(s.prompt)
        ids[i, :n] = torch.tensor(s.prompt + s.completion, dtype=torch.long)
        attention[i, :n] = 1
        completion[i, p:n] = True
    lengths = torch.tensor([len(s.completion) for s in seqs], dtype=torch.long)
    n_tokens = int(attention.sum())
    mask = None if n_tokens == attention.numel() else attention.to(device)
    return Batch(ids.to(device), mask, completion.to(device), lengths.to(device), n_tokens)


def left_pad(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as ``(ids, attention_mask)`` padded on the left, as generation wants them: every
    row's last token sits in the last column."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids, mask


def token_parts(
    items: Sequence[int], lengths: Sequence[int], seqs_per_item: int, budget: int
) -> list[list[int]]:
    """Split ``items`` (shortest first) into parts whose padded size fits ``budget`` tokens.

    A part of n items holds ``n · seqs_per_item`` sequences padded to its longest one; every part
    has at least one item. Activation memory grows with the tokens of one forward pass, so this
    bounds peak memory whatever the batch size.
    """
    parts: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in sorted(items, key=lambda i: lengths[i]):
        grown = max(longest, lengths[i])
        if current and (len(current) + 1) * seqs_per_item * grown > budget:
            parts.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        parts.append(current)
    return parts


def steps_for(n_examples: int, epochs: float, per_step: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_examples`` at ``per_step`` examples a step."""
    return max(1, math.ceil(epochs * n_examples / per_step))


def batch_schedule(
    lengths: Sequence[int], *, global_batch: int, n_batches: int, seed: int, window: int = 8
) -> list[list[int]]:
    """``n_batches`` global micro-batches of example indices, reproducible from ``seed``.

    Epochs follow each other as fresh shuffles; inside windows of ``window`` batches the
    indices are sorted by length (little padding) and the batches of a window are shuffled
    again, so lengths do not march in order. A resumed run rebuilds the same list and skips.
    """
    rng = random.Random(seed)
    n = len(lengths)
    need = n_batches * global_batch
    stream: list[int] = []
    while len(stream) < need:
        perm = list(range(n))
        rng.shuffle(perm)
        stream += perm
    stream = stream[:need]
    batches: list[list[int]] = []
    span = global_batch * window
    for start in range(0, need, span):
        chunk = sorted(stream[start : start + span], key=lambda i: lengths[i])
        group = [chunk[i : i + global_batch] for i in range(0, len(chunk), global_batch)]
        rng.shuffle(group)
        batches += group
    return batches


def backbone_and_head(model: Any) -> tuple[nn.Module, nn.Module | None, Any]:
    """The transformer body, the LM head (None for a classifier) and the config of an HF model.

    Works through a peft wrapper: LoRA layers live inside the body, so calling it directly still
    trains the adapter, and ``disable_adapter()`` still turns them off.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix)
    return body, base.get_output_embeddings(), base.config


class CompletionLogps(nn.Module):
    """A causal LM seen as ``(batch) -> log-probs of its completion tokens`` (flat, (N,)).

    Wrapping the LM in this module (rather than calling its parts from the loop) keeps the whole
    forward inside one ``nn.Module``, which DDP needs to synchronise gradients.
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        completion_mask: torch.Tensor,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        body, head, config = backbone_and_head(self.lm)
        hidden = body(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state  # (B, T, H)
        # Position t predicts token t + 1: keep the positions whose next token is a completion.
        predicts = completion_mask[:, 1:]  # (B, T-1)
        logits = head(hidden[:, :-1][predicts]).float()  # (N, V), never (B, T, V)
        cap = getattr(config, "final_logit_softcapping", None)
        if cap:
            logits = torch.tanh(logits / cap) * cap
        if temperature != 1.0:
            logits = logits / temperature
        logps = token_logps(logits, input_ids[:, 1:][predicts])  # (N,)
        entropy = None
        if with_entropy:
            with torch.no_grad():
                entropy = entropy_from_logits(logits.detach())  # (N,)
        return logps, entropy


def policy_logps(
    module: nn.Module, batch: Batch, temperature: float = 1.0, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return module(
        batch.input_ids, batch.attention_mask, batch.completion_mask, temperature, with_entropy
    )
