"""core.losses against numbers worked out by hand (math, not the function under test)."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from core.losses import (
    bradley_terry_loss,
    dpo_loss,
    entropy_from_logits,
    group_baseline,
    kl_penalty,
    kto_loss,
    masked_mean,
    policy_gradient_loss,
    rloo_advantages,
    sequence_logps,
    token_logps,
)


def t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def softplus(x: float) -> float:  # −logsigmoid(−x) = log(1 + e^x)
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---- Bradley-Terry ------------------------------------------------------------------------------
def test_bradley_terry_values_and_metrics():
    loss, m = bradley_terry_loss(t(2.0, 0.0), t(1.0, 1.0))
    expected = (softplus(-1.0) + softplus(1.0)) / 2
    assert loss.item() == pytest.approx(expected)
    assert m == pytest.approx(
        {"loss": expected, "accuracy": 0.5, "margin": 0.0, "mean_reward": 1.0}
    )


def test_bradley_terry_margin_shifts_the_logit():
    loss, m = bradley_terry_loss(t(2.0, 0.0), t(1.0, 1.0), margin=t(0.5, 0.5))
    assert loss.item() == pytest.approx((softplus(-0.5) + softplus(1.5)) / 2)
    assert m["margin"] == pytest.approx(0.0)  # the metric is r_c − r_r, without the target margin
    loss_f, _ = bradley_terry_loss(t(2.0, 0.0), t(1.0, 1.0), margin=0.5)
    assert loss_f.item() == pytest.approx(loss.item())


def test_bradley_terry_gradient():
    rc, rr = t(2.0, 0.0, grad=True), t(1.0, 1.0, grad=True)
    loss, _ = bradley_terry_loss(rc, rr)
    loss.backward()
    # d/dr_c of softplus(−d)/2 = −σ(−d)/2
    assert rc.grad.tolist() == pytest.approx([-sigmoid(-1.0) / 2, -sigmoid(1.0) / 2])
    assert rr.grad.tolist() == pytest.approx([sigmoid(-1.0) / 2, sigmoid(1.0) / 2])


# ---- DPO ----------------------------------------------------------------------------------------
def _dpo_inputs(grad: bool = False):
    # logits = (−1 − −2) − (−1.5 − −1.5) = 1
    return t(-1.0, grad=grad), t(-2.0, grad=grad), t(-1.5), t(-1.5)


def test_dpo_sigmoid():
    losses, rc, rr = dpo_loss(*_dpo_inputs(), beta=0.1)
    assert losses.tolist() == pytest.approx([softplus(-0.1)])
    assert rc.tolist() == pytest.approx([0.1 * 0.5])
    assert rr.tolist() == pytest.approx([0.1 * -0.5])


def test_dpo_label_smoothing_is_cdpo():
    losses, _, _ = dpo_loss(*_dpo_inputs(), beta=0.1, label_smoothing=0.2)
    assert losses.item() == pytest.approx(0.8 * softplus(-0.1) + 0.2 * softplus(0.1))


def test_dpo_ipo():
    losses, _, _ = dpo_loss(*_dpo_inputs(), beta=0.25, loss_type="ipo")
    assert losses.item() == pytest.approx((1 - 1 / (2 * 0.25)) ** 2)  # (1 − 2)² = 1
    losses, _, _ = dpo_loss(*_dpo_inputs(), beta=0.5, loss_type="ipo")
    assert losses.item() == pytest.approx(0.0)
    with pytest.raises(ValueError, match="loss_type"):
        dpo_loss(*_dpo_inputs(), loss_type="hinge")


def test_dpo_gradients_flow_to_policy_only_through_the_loss():
    pc, pr, rc, rr = _dpo_inputs(grad=True)
    losses, chosen_rewards, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    assert not chosen_rewards.requires_grad
    losses.sum().backward()
    g = 0.1 * sigmoid(-0.1)  # d/dlogits softplus(−β·logits) = −β·σ(−β·logits)
    assert pc.grad.item() == pytest.approx(-g)
    assert pr.grad.item() == pytest.approx(g)


# ---- KTO ----------------------------------------------------------------------------------------
def test_kto_with_zero_and_positive_reference_point():
    # chosen log-ratio 1, rejected log-ratio −1; KL inputs average to 0
    losses, rc, rr, kl = kto_loss(
        t(-1.0), t(-3.0), t(-1.0, -2.0), t(-2.0), t(-2.0), t(-1.5, -1.5), beta=1.0
    )
    assert kl.item() == 0.0
    assert losses.tolist() == pytest.approx([1 - sigmoid(1.0), 1 - sigmoid(1.0)])
    assert rc.tolist() == pytest.approx([1.0]) and rr.tolist() == pytest.approx([-1.0])

    losses, _, _, kl = kto_loss(
        t(-1.0),
        t(-3.0),
        t(-1.0, -1.0),
        t(-2.0),
        t(-2.0),
        t(-1.5, -1.5),
        beta=1.0,
        desirable_weight=2.0,
        undesirable_weight=0.5,
    )
    assert kl.item() == pytest.approx(0.5)
    assert losses.tolist() == pytest.approx([2 * (1 - sigmoid(0.5)), 0.5 * (1 - sigmoid(1.5))])


def test_kto_clamps_negative_kl_and_detaches_it():
    pkl = t(-3.0, -3.0, grad=True)
    pc = t(-1.0, grad=True)
    losses, _, _, kl = kto_loss(pc, t(-3.0), pkl, t(-2.0), t(-2.0), t(-1.0, -1.0), beta=1.0)
    assert kl.item() == 0.0
    losses.sum().backward()
    assert pkl.grad is None
    assert pc.grad.item() == pytest.approx(-sigmoid(1.0) * (1 - sigmoid(1.0)))


def test_kto_handles_empty_sets():
    empty = torch.zeros(0, dtype=torch.float64)
    losses, rc, rr, _ = kto_loss(empty, t(-3.0), t(-1.0), empty, t(-2.0), t(-1.0), beta=1.0)
    assert rc.numel() == 0 and losses.tolist() == pytest.approx([1 - sigmoid(1.0)])
    losses, _, rr, _ = kto_loss(t(-1.0), empty, t(-1.0), t(-2.0), empty, t(-1.0), beta=1.0)
    assert rr.numel() == 0 and losses.tolist() == pytest.approx([1 - sigmoid(1.0)])
    losses, _, _, kl = kto_loss(empty, t(-3.0), empty, empty, t(-2.0), empty, beta=1.0)
    assert kl.item() == 0.0 and losses.tolist() == pytest.approx([1 - sigmoid(1.0)])


# ---- RLOO, KL, helpers ----------------------------------------------------------------------------
def test_rloo_leave_one_out_baseline():
    adv = rloo_advantages(t(1.0, 2.0, 3.0, 0.0, 0.0, 6.0).view(2, 3))
    assert adv.flatten().tolist() == pytest.approx([-1.5, 0.0, 1.5, -3.0, -3.0, 6.0])
    with pytest.raises(ValueError, match="K >= 2"):
        rloo_advantages(t(1.0, 2.0).view(2, 1))


def test_group_baseline_leaves_each_sample_out_of_its_own_group():
    rewards = t(1.0, 2.0, 3.0, 0.0, 6.0, 9.0)
    groups = torch.tensor([7, 7, 7, 2, 2, 5])  # ids in any order; group 5 has one sample
    base = group_baseline(rewards, groups)
    assert base.tolist() == pytest.approx([2.5, 2.0, 1.5, 6.0, 0.0, 3.5])  # 3.5: mean of all
    # equal-sized groups: the same advantages as RLOO's
    even = t(1.0, 2.0, 3.0, 0.0, 0.0, 6.0)
    adv = even - group_baseline(even, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert adv.tolist() == pytest.approx(rloo_advantages(even.view(2, 3)).flatten().tolist())
    with pytest.raises(ValueError, match="same shape"):
        group_baseline(t(1.0, 2.0), torch.tensor([0]))


def test_kl_penalty_estimators():
    logp, ref = t(math.log(0.5)), t(math.log(0.25))
    d = math.log(2)
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(d)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(d * d / 2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + d)
    assert kl_penalty(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k9")


def test_masked_mean():
    x = t(1.0, 2.0, 3.0, 4.0).view(2, 2)
    mask = torch.tensor([[1, 0], [1, 1]])
    assert masked_mean(x, mask).item() == pytest.approx(8 / 3)
    assert masked_mean(x, mask, dim=1).tolist() == pytest.approx([1.0, 3.5])
    assert masked_mean(x, torch.zeros(2, 2)).item() == 0.0


def test_entropy_from_logits():
    h = entropy_from_logits(torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3), -1e9, -1e9]]))
    p = [0.25, 0.75]
    assert h.tolist() == pytest.approx([math.log(4), -sum(q * math.log(q) for q in p)], abs=1e-5)


def test_policy_gradient_loss_clips_and_reports_clip_ratio():
    new = t(math.log(1.5), 0.0, math.log(0.5), 0.0, grad=True)
    old = torch.zeros(4, dtype=torch.float64)
    adv, mask = t(2.0, -1.0), torch.ones(2, 2)
    loss, clip_ratio = policy_gradient_loss(new.view(2, 2), old.view(2, 2), adv, mask, clip_eps=0.2)
    # tokens: max(−2·1.5, −2·1.2) = −2.4 | −2 | max(0.5, 0.8) = 0.8 | 1
    assert loss.item() == pytest.approx((-2.4 - 2 + 0.8 + 1) / 4)
    assert clip_ratio.item() == pytest.approx(0.5)
    loss.backward()
    # clipped tokens get no gradient; an unclipped token gets −A·ρ/N
    assert new.grad.tolist() == pytest.approx([0.0, -2 / 4, 0.0, 1 / 4])


def test_policy_gradient_on_policy_is_reinforce():
    new = t(-1.0, -2.0, -0.5, -0.1, grad=True)
    adv, mask = t(2.0, -1.0), torch.tensor([[1, 1], [1, 0]])
    loss, clip_ratio = policy_gradient_loss(new.view(2, 2), new.detach().view(2, 2), adv, mask)
    assert loss.item() == pytest.approx(-(2 + 2 - 1) / 3)
    assert clip_ratio.item() == 0.0
    loss.backward()
    assert new.grad.tolist() == pytest.approx([-2 / 3, -2 / 3, 1 / 3, 0.0])


def test_token_and_sequence_logps():
    logits = torch.tensor([[[0.0, 0.0, 0.0], [0.0, math.log(2), 0.0]]], requires_grad=True)
    labels = torch.tensor([[1, 1]])
    assert token_logps(logits, labels)[0].tolist() == pytest.approx(
        [math.log(1 / 3), math.log(0.5)], abs=1e-6
    )
    assert token_logps(logits, torch.tensor([[1, -100]]))[0, 1].item() == 0.0
    total = sequence_logps(logits, labels, torch.tensor([[1, 0]]))
    assert total.tolist() == pytest.approx([math.log(1 / 3)], abs=1e-6)
    avg = sequence_logps(logits, labels, torch.ones(1, 2), average=True)
    assert avg.tolist() == pytest.approx([(math.log(1 / 3) + math.log(0.5)) / 2], abs=1e-6)
    total.sum().backward()
    assert logits.grad[0, 1].abs().sum().item() == 0.0  # the masked position gets no gradient
    assert logits.grad[0, 0].tolist() == pytest.approx([-1 / 3, 2 / 3, -1 / 3], abs=1e-6)


# ---- the same numbers as TRL ------------------------------------------------------------------------
# TRL (>= 1.0) computes its losses inline in `_compute_loss`, not in a standalone function, so the
# test drives that method with a stand-in trainer and a stand-in model whose per-token log-probs
# sum to the sequence log-probs we chose. If TRL's internals move, the test skips (and says so).
def _fake_model(log_probs: torch.Tensor):
    def forward(**kwargs):
        n = log_probs.size(1)
        return SimpleNamespace(
            log_probs=log_probs,
            entropy=torch.zeros_like(log_probs),
            mean_logits=torch.zeros_like(log_probs),
            is_top1=torch.zeros(log_probs.shape, dtype=torch.bool),
            log_sum_sq_probs=torch.zeros(log_probs.size(0), n),
        )

    return forward


def _fake_trainer(**attrs):
    accelerator = SimpleNamespace(
        device=torch.device("cpu"), gather_for_metrics=lambda x: x, gather=lambda x: x
    )
    return SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=accelerator,
        aux_loss_enabled=False,
        precompute_ref_logps=True,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        **attrs,
    )


def _per_token(seq_logps: torch.Tensor, seq_len: int) -> torch.Tensor:
    out = torch.zeros(seq_logps.numel(), seq_len - 1)
    out[:, 0] = seq_logps
    return out


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_matches_trl(loss_type):
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    gen = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-10 * torch.rand(3, generator=gen) for _ in range(4))
    seq_len = 5
    inputs = {
        "input_ids": torch.ones(6, seq_len, dtype=torch.long),
        "attention_mask": torch.ones(6, seq_len, dtype=torch.long),
        "completion_mask": torch.ones(6, seq_len, dtype=torch.long),
        "ref_chosen_logps": rc,
        "ref_rejected_logps": rr,
    }
    fake = _fake_trainer(
        ld_alpha=None,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=0.2,
        label_smoothing=0.0,
        use_weighting=False,
    )
    model = _fake_model(_per_token(torch.cat([pc, pr]), seq_len))
    try:
        trl_loss = trl_dpo.DPOTrainer._compute_loss(fake, model, inputs, False)
    except (AttributeError, KeyError, TypeError) as e:
        pytest.skip(f"TRL's DPOTrainer internals differ from 1.16 ({e!r}); compare by formula")
    if loss_type == "ipo":  # TRL averages over the completion tokens (seq_len of them) for IPO
        pc, pr, rc, rr = (x / seq_len for x in (pc, pr, rc, rr))
    losses, chosen_rewards, rejected_rewards = dpo_loss(
        pc, pr, rc, rr, beta=0.2, loss_type=loss_type
    )
    assert trl_loss.item() == pytest.approx(losses.mean().item(), rel=1e-5)
    if loss_type == "sigmoid":
        metrics = fake._metrics["train"]
        assert metrics["rewards/chosen"][0] == pytest.approx(chosen_rewards.mean().item(), rel=1e-5)
        assert metrics["rewards/rejected"][0] == pytest.approx(
            rejected_rewards.mean().item(), rel=1e-5
        )


def test_kto_matches_trl():
    trl_kto = pytest.importorskip("trl.trainer.kto_trainer")
    gen = torch.Generator().manual_seed(1)
    policy, ref = -10 * torch.rand(5, generator=gen), -10 * torch.rand(5, generator=gen)
    policy_kl, ref_kl = -10 * torch.rand(5, generator=gen), -12 * torch.rand(5, generator=gen)
    label = torch.tensor([True, False, True, True, False])
    seq_len = 4
    ones = torch.ones(5, seq_len, dtype=torch.long)
    inputs = {
        "input_ids": ones,
        "attention_mask": ones,
        "completion_mask": ones,
        "KL_input_ids": ones,
        "KL_attention_mask": ones,
        "KL_completion_mask": ones,
        "label": label,
        "ref_logps": ref,
        "ref_KL_logps": ref_kl,
    }
    calls = iter([_per_token(policy_kl, seq_len), _per_token(policy, seq_len)])

    def model(**kwargs):
        return _fake_model(next(calls))(**kwargs)

    fake = _fake_trainer(
        calculate_KL=True, loss_type="kto", beta=0.3, desirable_weight=1.5, undesirable_weight=0.7
    )
    fake._compute_kl_logps = lambda m, batch: trl_kto.KTOTrainer._compute_kl_logps(fake, m, batch)
    try:
        trl_loss = trl_kto.KTOTrainer._compute_loss(fake, model, inputs, False)
    except (AttributeError, KeyError, TypeError, StopIteration) as e:
        pytest.skip(f"TRL's KTOTrainer internals differ from 1.16 ({e!r}); compare by formula")
    losses, _, _, kl = kto_loss(
        policy[label],
        policy[~label],
        policy_kl,
        ref[label],
        ref[~label],
        ref_kl,
        beta=0.3,
        desirable_weight=1.5,
        undesirable_weight=0.7,
    )
    assert kl.item() > 0  # the test exercises the reference point
    assert trl_loss.item() == pytest.approx(losses.mean().item(), rel=1e-5)
    assert fake._metrics["train"]["kl"][0] == pytest.approx(kl.item(), rel=1e-5)
