"""The reward model: the base causal LM's body with a scalar head, saved in the standard HF form.

Choice: ``AutoModelForSequenceClassification`` with ``num_labels=1`` built *around the loaded
causal LM's body* (no second copy; any model spec works, GGUF and checkpoints included). Saved
full, it is a folder any ``AutoModelForSequenceClassification.from_pretrained`` (and TRL's PPO/RLOO
trainers) can load; saved as LoRA, it is a peft SEQ_CLS adapter whose ``modules_to_save`` carries
the head. The input is the chat-formatted prompt followed by the response, with no end-of-turn
token appended.

Pooling (which hidden state the head reads; ``RewardConfig.pooling``):

- ``mean`` (default): the mean of the response tokens' last hidden states. A small model's last
  token of a response cut short says little about the whole response; the mean of its tokens
  does (the held-out accuracies behind this are in docs/design.md).
- ``last``: the last token, which is what HF's own ``...ForSequenceClassification`` pooling picks
  (the last non-pad token), so its scores agree with TRL and ``transformers`` unchanged.

A checkpoint records its pooling in ``run_config.json`` (``pooling``) and in the model config
(``reward_pooling``); one without it (trained elsewhere, or before pooling existed) uses ``last``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.checkpoints import latest_checkpoint, run_config, verify
from core.errors import ModelLoadError
from core.models.batching import Tokens, backbone_and_head, collate, fit
from core.models.specs import Progress, parse_dtype, pick_device
from core.models.tokens import format_prompt
from core.quiet_imports import quiet_import
from core.store import ProjectStore

HEAD_NAMES = ("score", "classifier")
POOLINGS = ("mean", "last")


def to_reward_model(lm: nn.Module, pad_token_id: int | None, pooling: str = "last") -> nn.Module:
    """A ``...ForSequenceClassification`` (one label) sharing ``lm``'s body; the head is new."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(lm.config)
    config.num_labels = 1
    config.reward_pooling = pooling  # saved in config.json: how this app scores with it
    config.pad_token_id = pad_token_id if pad_token_id is not None else config.eos_token_id
    with torch.device("meta"):  # allocate nothing: the body is taken from ``lm`` below
        model = AutoModelForSequenceClassification.from_config(config)
    body = getattr(lm, lm.base_model_prefix)
    setattr(model, model.base_model_prefix, body)
    head = reward_head(model)
    param = next(body.parameters())
    head.to_empty(device=param.device)
    head.to(param.dtype)
    with torch.no_grad():  # TRL's init: small weights so early rewards are near 0
        for p in head.parameters():
            p.normal_(0.0, 1.0 / (config.hidden_size + 1) ** 0.5) if p.dim() > 1 else p.zero_()
    model.config.architectures = [type(model).__name__]
    return model


def reward_head(model: nn.Module) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for name in HEAD_NAMES:
        if hasattr(base, name):
            return getattr(base, name)
    raise ValueError(f"{type(base).__name__} has no scalar head ({', '.join(HEAD_NAMES)})")


def pooling_of(model: nn.Module, run_config: dict[str, Any] | None = None) -> str:
    """The pooling a reward model was trained with: its run config's, else its model config's,
    else ``last`` (HF's own, and this app's before pooling was a setting)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    pooling = (run_config or {}).get("pooling") or getattr(base.config, "reward_pooling", None)
    return pooling if pooling in POOLINGS else "last"


class RewardScores(nn.Module):
    """``(input_ids, attention_mask, completion_mask) -> (B,)`` rewards, pooled as ``pooling``
    says: the mean over each row's response tokens, or its last real token."""

    def __init__(self, model: nn.Module, pooling: str = "last"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.model, self.pooling = model, pooling

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        completion_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        body, _, _ = backbone_and_head(self.model)
        hidden = body(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state  # (B, T, H)
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        if attention_mask is None:
            last = torch.full((input_ids.size(0),), input_ids.size(1) - 1, device=input_ids.device)
        else:
            last = attention_mask.sum(dim=1) - 1  # right padding
        weights = torch.zeros(input_ids.shape, dtype=hidden.dtype, device=hidden.device)
        if self.pooling == "mean" and completion_mask is not None:
            weights[completion_mask] = 1.0
        empty = weights.sum(dim=1) == 0  # `last` pooling, or a row without response tokens
        weights[rows[empty], last[empty]] = 1.0
        weights = weights / weights.sum(dim=1, keepdim=True)
        pooled = torch.einsum("bt,bth->bh", weights, hidden)  # (B, H)
        return reward_head(self.model)(pooled).squeeze(-1).float()  # (B,)


@dataclass
class LoadedRewardModel:
    model: nn.Module
    tokenizer: Any
    device: torch.device
    checkpoint_id: int | None = None
    max_length: int = 1024
    pooling: str = "last"


def _messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


@torch.inference_mode()
def score_texts(
    rm: LoadedRewardModel,
    prompts: Sequence[str | list[dict[str, str]]],
    responses: Sequence[str],
    batch_size: int = 16,
) -> list[float]:
    """Reward of each (prompt, response); a prompt is plain text or chat messages."""
    tokens = Tokens(None, rm.tokenizer, rm.max_length, eos=False)
    seqs = [
        fit(
            tokens.encode(format_prompt(rm.tokenizer, _messages(p))) or [rm.tokenizer.eos_token_id],
            tokens.completion(r),
            rm.max_length,
        )
        for p, r in zip(prompts, responses, strict=True)
    ]
    scorer = RewardScores(rm.model, rm.pooling).eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [0.0] * len(seqs)
    pad = rm.tokenizer.pad_token_id if rm.tokenizer.pad_token_id is not None else 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = collate([seqs[i] for i in chunk], pad, rm.device)
        rewards = scorer(batch.input_ids, batch.attention_mask, batch.completion_mask)
        for i, r in zip(chunk, rewards.tolist(), strict=True):
            out[i] = float(r)
    return out


def load_reward_model(
    store: ProjectStore,
    ref: str | int | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    progress: Progress | None = None,
) -> Any:
    """A reward checkpoint (``checkpoint:ID``; None = the newest reward checkpoint), ready to score.

    Returns a ``LoadedRewardModel`` for ``score_texts``.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from core.models.loading import DTYPE_NAMES, load_model

    rec = latest_checkpoint(store, kind="reward") if ref is None else store.checkpoint(ref)
    if rec is None:
        raise ModelLoadError(
            f"{store.path} has no reward model yet; train one first (train --algo reward) or "
            "score with a scripted rater (--rater MODULE:FUNC)."
        )
    if rec["kind"] != "reward":
        raise ModelLoadError(
            f"checkpoint:{rec['id']} is a {rec['kind']} checkpoint, not a reward model; choose "
            "a checkpoint made by `train --algo reward`."
        )
    folder = verify(store, rec)
    dev = pick_device(device)
    dt = parse_dtype(dtype, dev)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if progress:
        progress(f"Loading reward model checkpoint:{rec['id']}…", 0.1)
    if rec["adapter"]:
        quiet_import("peft")
        from peft import PeftModel

        base = load_model(rec["base_model"], store=store, device="cpu", dtype=DTYPE_NAMES[dt])
        model = to_reward_model(base.model, tokenizer.pad_token_id)
        model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    else:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), dtype=dt)
    model.to(dev).eval()
    pooling = pooling_of(model, run_config(folder))
    return LoadedRewardModel(model, tokenizer, dev, rec["id"], pooling=pooling)
