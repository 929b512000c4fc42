"""Pure tensor functions for RLHF objectives: no model code, no state, torch only.

Each function gives its formula and tensor shapes. ``B`` is the batch of sequences (or pairs), ``T``
the number of (completion) token positions, ``V`` the vocabulary, ``P`` prompts and ``K`` samples
per prompt. Formulas follow TRL so that our numbers read like theirs:

- Bradley-Terry reward model loss: TRL ``RewardTrainer`` (with the optional per-pair margin).
- DPO "sigmoid" with cDPO label smoothing and IPO: TRL ``DPOTrainer``. TRL >= 1.0 dropped label
  smoothing from "sigmoid" (it kept the cDPO form in its "aot" variants); with ``label_smoothing=0``
  the two agree exactly. IPO, as in TRL, expects *length-averaged* log-probs: pass
  ``sequence_logps(..., average=True)``.
- KTO: TRL ``KTOTrainer`` (loss_type "kto").

Log-probs come in as sequence totals ``(B,)`` from :func:`sequence_logps`; the caller shifts
logits and labels (see there).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "bradley_terry_loss",
    "dpo_loss",
    "entropy_from_logits",
    "group_baseline",
    "kl_penalty",
    "kto_loss",
    "masked_mean",
    "policy_gradient_loss",
    "rloo_advantages",
    "sequence_logps",
    "token_logps",
]


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    margin: torch.Tensor | float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Pairwise reward-model loss: ``mean(-logsigmoid(r_c - r_r - m))``.

    ``r_chosen``, ``r_rejected``: ``(B,)`` scalar rewards; ``margin`` ``m``: ``(B,)``, a float, or
    None (0). Returns the scalar loss and metrics as floats: ``loss``, ``accuracy`` =
    mean(r_c > r_r), ``margin`` = mean(r_c - r_r) and ``mean_reward`` = mean of all 2B rewards
    (TRL's names).
    """
    diff = r_chosen - r_rejected
    logits = diff if margin is None else diff - margin
    loss = -F.logsigmoid(logits).mean()
    with torch.no_grad():
        metrics = {
            "loss": float(loss.detach()),
            "accuracy": float((r_chosen > r_rejected).float().mean()),
            "margin": float(diff.mean()),
            "mean_reward": float(torch.cat([r_chosen.flatten(), r_rejected.flatten()]).mean()),
        }
    return loss, metrics


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimization per pair; all inputs are ``(B,)`` sequence log-probs.

    ``logits = (π_c − π_r) − (ref_c − ref_r)``, then

    - ``sigmoid`` (DPO; cDPO when ε = ``label_smoothing`` > 0):
      ``−logsigmoid(β·logits)·(1 − ε) − logsigmoid(−β·logits)·ε``
    - ``ipo``: ``(logits − 1/(2β))²`` (β is the paper's τ; pass length-averaged log-probs).

    Returns ``(losses (B,), chosen_rewards (B,), rejected_rewards (B,))`` with the implicit rewards
    ``β·(π − ref)`` detached. Reduce with ``losses.mean()``.
    """
    logits = (policy_chosen_logps - policy_rejected_logps) - (ref_chosen_logps - ref_rejected_logps)
    if loss_type == "sigmoid":
        losses = (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            - F.logsigmoid(-beta * logits) * label_smoothing
        )
    elif loss_type == "ipo":
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        raise ValueError(f"dpo loss_type {loss_type!r} is not one of 'sigmoid', 'ipo'")
    chosen_rewards = beta * (policy_chosen_logps - ref_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - ref_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def kto_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    policy_kl_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    ref_kl_logps: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Kahneman-Tversky Optimization on unpaired examples (TRL's "kto" loss).

    Chosen (desirable) inputs are ``(Bc,)``, rejected (undesirable) ``(Br,)``, and the KL inputs
    ``(Bk,)`` are log-probs of mismatched prompt/completion pairs used to estimate the reference
    point. Either of Bc, Br may be 0.

    - ``z = clamp(mean(π_kl − ref_kl), min=0)``, detached (no gradient through the reference point)
    - desirable: ``1 − σ(β·((π_c − ref_c) − z))``, weighted by ``desirable_weight``
    - undesirable: ``1 − σ(β·(z − (π_r − ref_r)))``, weighted by ``undesirable_weight``

    Returns ``(losses (Bc+Br,), chosen_rewards (Bc,), rejected_rewards (Br,), kl ())``: the losses
    are the weighted desirable ones followed by the undesirable ones; rewards are ``β·(π − ref)``
    detached. Reduce with ``losses.mean()`` (or ``nanmean`` if the batch may be empty).
    """
    kl = (policy_kl_logps - ref_kl_logps).mean().detach().clamp(min=0)
    if policy_kl_logps.numel() == 0:  # mean of nothing is nan: no reference point, use 0
        kl = torch.zeros((), dtype=policy_chosen_logps.dtype, device=policy_chosen_logps.device)

    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    # Empty sets pass straight through: sigmoid of an empty tensor is an empty tensor.
    chosen_losses = 1 - torch.sigmoid(beta * (chosen_logratios - kl))
    rejected_losses = 1 - torch.sigmoid(beta * (kl - rejected_logratios))
    losses = torch.cat(
        (desirable_weight * chosen_losses, undesirable_weight * rejected_losses), dim=0
    )
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach(), kl


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out advantages: ``A_ik = r_ik − mean_{j≠k} r_ij``.

    ``rewards``: ``(P, K)``, K samples per prompt with K ≥ 2. Equivalently
    ``A = K/(K−1) · (r − mean_k r)``. Returns ``(P, K)``.
    """
    if rewards.dim() != 2 or rewards.size(1) < 2:
        raise ValueError(
            f"rloo_advantages needs rewards of shape (prompts, K) with K >= 2, got "
            f"{tuple(rewards.shape)}; generate at least 2 samples per prompt"
        )
    k = rewards.size(1)
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def group_baseline(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Leave-one-out baseline within groups: ``b_i = mean_{j≠i, g_j = g_i} r_j``.

    ``rewards``: ``(N,)`` floats; ``groups``: ``(N,)`` integer ids (e.g. the prompt of each rated
    sample). A sample alone in its group has no peer to compare with and gets the mean of all
    rewards instead. ``rewards − group_baseline`` is then :func:`rloo_advantages` for ragged groups:
    it leaves out what the group (the prompt) contributes to a score. Returns ``(N,)``.
    """
    if rewards.dim() != 1 or groups.shape != rewards.shape:
        raise ValueError(
            f"group_baseline needs rewards and groups of the same shape (N,), got "
            f"{tuple(rewards.shape)} and {tuple(groups.shape)}"
        )
    _, index = torch.unique(groups, return_inverse=True)
    n_groups = int(index.max()) + 1 if index.numel() else 0
    sums = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(0, index, rewards)
    counts = torch.zeros(n_groups, dtype=rewards.dtype).index_add_(
        0, index, torch.ones_like(rewards)
    )
    peers = counts[index] - 1
    loo = (sums[index] - rewards) / peers.clamp(min=1)
    return torch.where(peers > 0, loo, rewards.mean())


def kl_penalty(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    kind: Literal["k1", "k2", "k3"] = "k1",
) -> torch.Tensor:
    """Per-token estimates of KL(π ‖ π_ref) from samples of π; any shape, returns the same shape.

    With ``d = log π − log π_ref`` (Schulman, "Approximating KL divergence"):
    ``k1 = d`` (unbiased, can be negative), ``k2 = d²/2``, ``k3 = exp(−d) − 1 + d`` (unbiased, ≥ 0;
    TRL's GRPO/RLOO ``beta`` term).
    """
    d = logps - ref_logps
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.exp(-d) - 1 + d
    raise ValueError(f"kl_penalty kind {kind!r} is not one of 'k1', 'k2', 'k3'")


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x·mask) / sum(mask)`` over all elements (or along ``dim``); 0 where the mask is empty."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1.0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last axis: ``logsumexp(z) − Σ softmax(z)·z``.

    ``(..., V)`` → ``(...)``, computed in float32.
    """
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def policy_gradient_loss(
    logps_new: torch.Tensor,
    logps_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clipped policy-gradient loss per token, averaged over the unmasked tokens of the batch.

    ``logps_new``, ``logps_old``, ``mask``: ``(B, T)``; ``advantages``: ``(B,)``, one per sequence,
    broadcast over its tokens. With ``ρ = exp(new − old)``:
    ``ℓ_t = max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε))`` and ``loss = Σ ℓ_t·m_t / Σ m_t``.
    ``clip_ratio`` (detached) is the fraction of unmasked tokens where the clip is active:
    ``(ρ < 1−ε and A < 0) or (ρ > 1+ε and A > 0)``. For on-policy updates (old = new.detach())
    ρ = 1 and the gradient is plain REINFORCE: ``−A·∇log π``.
    """
    adv = advantages.unsqueeze(-1)  # (B, 1), broadcast over T
    ratio = torch.exp(logps_new - logps_old)
    clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
    per_token = torch.maximum(-adv * ratio, -adv * clipped)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        is_clipped = ((ratio < 1 - clip_eps) & (adv < 0)) | ((ratio > 1 + clip_eps) & (adv > 0))
        clip_ratio = masked_mean(is_clipped.to(per_token.dtype), mask)
    return loss, clip_ratio


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under its own row of logits: ``log softmax(logits)[labels]``.

    ``logits``: ``(B, T, V)``, ``labels``: ``(B, T)`` → ``(B, T)`` float32. The rows are *already
    aligned*: ``logits[:, t]`` is the distribution that predicts ``labels[:, t]``. For a causal LM
    the caller shifts: ``token_logps(out.logits[:, :-1], input_ids[:, 1:])``. Negative labels
    (the ``-100`` ignore index) give 0.
    """
    logits = logits.float()
    ignore = labels < 0
    safe = labels.masked_fill(ignore, 0)
    picked = torch.gather(logits, -1, safe.unsqueeze(-1)).squeeze(-1)
    logps = picked - torch.logsumexp(logits, dim=-1)
    return logps.masked_fill(ignore, 0.0)


def sequence_logps(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    average: bool = False,
) -> torch.Tensor:
    """Summed (or, with ``average``, mean) log-prob of the masked labels per sequence.

    ``Σ_t mask_t · log p(labels_t | logits_t)``; ``logits (B, T, V)``, ``labels`` and ``mask``
    ``(B, T)`` → ``(B,)``. Same alignment as :func:`token_logps`: shift before calling, e.g.
    ``sequence_logps(logits[:, :-1], ids[:, 1:], completion_mask[:, 1:])``.
    """
    per_token = token_logps(logits, labels) * mask.to(torch.float32)
    total = per_token.sum(dim=-1)
    if average:
        return total / mask.sum(dim=-1).clamp(min=1).to(total.dtype)
    return total
