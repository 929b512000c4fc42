"""The rule table of the training diagnostics (diagnostics.py): what each rule checks and why.

Each ``Rule`` names the algorithms it applies to, its thresholds (defaults a run's config may
override), a check over the run's smoothed metrics, what the finding usually means, what to try,
and the public reports behind it (``SOURCES``). docs/diagnostics.md explains every threshold.

Smoothing: ``Track.now(k)`` is the median of the last k readings and ``Track.start()`` the
median of the first three, so a single noisy step can neither trigger a rule nor poison a start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import median
from types import MappingProxyType
from typing import Any

START_READINGS = 3  # a metric's start: the median of its first readings
RECENT_READINGS = 24  # readings kept per metric for medians, slopes and running baselines


class Track:
    """One metric's readings in a run: the first few (its start) and a window of recent ones."""

    def __init__(self) -> None:
        self.first: list[float] = []
        self.recent: deque[tuple[int, float]] = deque(maxlen=RECENT_READINGS)
        self.count = 0

    def add(self, step: int, value: float) -> None:
        if len(self.first) < START_READINGS:
            self.first.append(value)
        self.recent.append((step, value))
        self.count += 1

    def start(self) -> float | None:
        """Median of the first readings, once there are enough of them."""
        return median(self.first) if len(self.first) == START_READINGS else None

    def now(self, k: int = 3) -> float | None:
        """Median of the last ``k`` readings (robust to one odd step), or None before ``k``."""
        return median(self.last(k)) if len(self.recent) >= k else None

    def trimmed_mean(self, k: int, cut: float = 0.125) -> float | None:
        """Mean of the last ``k`` readings without the highest and lowest ``cut`` of them:
        smoother than a median for lumpy values (accuracies of small batches), still robust."""
        if len(self.recent) < k:
            return None
        values = sorted(self.last(k))
        drop = int(k * cut)
        kept = values[drop : k - drop]
        return sum(kept) / len(kept)

    def last(self, k: int) -> list[float]:
        return [v for _, v in list(self.recent)[-k:]]

    def slope(self, k: int) -> float | None:
        """Change per step over the last ``k`` readings, or None before ``k``: the median of the
        slopes between every two of them (Theil-Sen), so one wild reading cannot fake a trend."""
        points = list(self.recent)[-k:]
        if len(points) < max(k, 2):
            return None
        slopes = [
            (v2 - v1) / (s2 - s1)
            for i, (s1, v1) in enumerate(points)
            for s2, v2 in points[i + 1 :]
            if s2 != s1
        ]
        return median(slopes) if slopes else None


@dataclass
class RunState:
    """What the rules read: the algorithm, its config, every metric's ``Track``, the steps seen."""

    algo: str
    config: Mapping[str, Any] = field(default_factory=dict)
    tracks: dict[str, Track] = field(default_factory=dict)
    steps: int = 0
    active: set[str] = field(default_factory=set)  # rules whose episode is going on

    def track(self, name: str) -> Track:
        return self.tracks.get(name) or Track()  # an empty track: the rule cannot apply yet


Check = Callable[[RunState, Mapping[str, float]], "str | None"]


@dataclass(frozen=True)
class Rule:
    """One failure mode. ``check`` returns a short "what happened" phrase while the condition
    holds, else None; ``means`` and ``remedy`` complete the alert's one-line message."""

    id: str
    algos: tuple[str, ...]
    thresholds: Mapping[str, float]
    detects: str
    means: str
    remedy: str
    sources: tuple[str, ...]
    check: Check = field(repr=False, compare=False)


def _ready(*tracks: Track, n: float) -> bool:
    """Each track has ``n`` readings, and never fewer than 4: a start takes the first 3."""
    return all(t.count >= max(int(n), 4) for t in tracks)


def _displacement(s: RunState, t: Mapping[str, float]) -> str | None:
    """Both responses of the pairs lost likelihood. DPO: their mean per-token log-probs fell by
    ``logp_drop`` (the size, free of response length) *and* both implicit rewards are below zero
    (a fall against the reference on the same pairs, which a batch of unlikelier responses
    cannot fake). KTO logs no log-probs: both implicit rewards at most -kto_reward_drop."""
    rc, rr = s.track("rewards/chosen"), s.track("rewards/rejected")
    if not _ready(rc, rr, n=t["min_steps"]):
        return None
    below = max(rc.now(), rr.now())  # the higher of the two implicit rewards
    chosen = s.track("logps/chosen_per_token")
    rejected = s.track("logps/rejected_per_token")
    if _ready(chosen, rejected, n=t["min_steps"]):
        c_drop, r_drop = chosen.start() - chosen.now(), rejected.start() - rejected.now()
        if min(c_drop, r_drop) >= t["logp_drop"] and below < 0:
            return (
                f"the per-token log-probs of chosen and rejected responses both fell "
                f"({c_drop:.2f} and {r_drop:.2f} nats below their start)"
            )
    elif s.algo == "kto" and below <= -t["kto_reward_drop"]:
        return (
            f"the rewards of desirable and undesirable examples both fell (to {below:.2f} or less)"
        )
    return None


def _saturation(s: RunState, t: Mapping[str, float]) -> str | None:
    """DPO (sigmoid loss): every pair of recent batches ranked right with huge margins."""
    if s.config.get("loss_type", "sigmoid") != "sigmoid":
        return None  # IPO regresses the margin to a fixed target; large margins are its goal
    acc, margins = s.track("rewards/accuracies"), s.track("rewards/margins")
    if not _ready(acc, margins, n=int(t["min_steps"])):
        return None
    a, m = min(acc.last(3)), margins.now()
    if a >= t["min_accuracy"] and m >= t["min_margin"]:
        return f"reward accuracy reached {a:.2f} with a mean reward margin of {m:.1f}"
    return None


def _loss_rising(s: RunState, t: Mapping[str, float]) -> str | None:
    """The loss well above where the run started: the optimiser is making its objective worse."""
    loss = s.track("loss")
    if not _ready(loss, n=int(t["min_steps"])) or loss.start() <= 0:
        return None
    now, start = loss.now(), loss.start()
    if now >= t["factor"] * start:
        return f"the loss rose from {start:.3g} to {now:.3g}"
    return None


def _kl_blowup(s: RunState, t: Mapping[str, float]) -> str | None:
    kl = s.track("kl")
    if not _ready(kl, n=int(t["min_steps"])):
        return None
    now, slope = kl.now(), kl.slope(max(2, int(t["slope_window"])))
    if now >= t["max_kl"]:
        return f"the KL to the reference reached {now:.1f} nats per response"
    if now < t["min_kl_for_slope"]:
        return None
    if slope is not None and slope >= t["max_slope"]:
        return f"the KL to the reference is {now:.1f} nats and rising {slope:.2f} nats per step"
    if "kl-blowup" in s.active:  # a fast rise that slows down is the same episode until KL drops
        return f"the KL to the reference is still {now:.1f} nats"
    return None


def _kl_negative(s: RunState, t: Mapping[str, float]) -> str | None:
    kl = s.track("kl")
    if not _ready(kl, n=int(t["min_steps"])):
        return None
    now = kl.now(5)
    if now is not None and now <= t["max_kl"]:
        return f"the estimated KL to the reference is negative ({now:.2f} nats per response)"
    return None


def _ratio_to_start(track: Track, k: int) -> float | None:
    start, now = track.start(), track.now(k)
    return now / start if start and start > 0 and now is not None else None


def _length_hacking(s: RunState, t: Mapping[str, float]) -> str | None:
    length, reward = s.track("completions/mean_length"), s.track("reward")
    if not _ready(length, reward, n=int(t["min_steps"])):
        return None
    grown, paid = _ratio_to_start(length, 5), reward.now(5)
    if grown is not None and paid is not None and grown >= t["growth"] and paid > reward.start():
        return (
            f"responses grew to {grown:.1f}x their starting length "
            f"({length.now(5):.0f} tokens) while the reward rose"
        )
    return None


def _entropy_collapse(s: RunState, t: Mapping[str, float]) -> str | None:
    entropy = s.track("entropy")
    if not _ready(entropy, n=int(t["min_steps"])):
        return None
    kept = _ratio_to_start(entropy, 5)
    if kept is not None and kept <= t["fraction"]:
        return f"the policy's entropy fell to {kept:.0%} of its start ({entropy.now(5):.2f} nats)"
    return None


def _repetition(s: RunState, t: Mapping[str, float]) -> str | None:
    distinct = s.track("completions/distinct_2")
    if not _ready(distinct, n=int(t["min_steps"])):
        return None
    kept = _ratio_to_start(distinct, 5)
    if kept is not None and kept <= t["fraction"]:
        return f"distinct bigrams in the rollouts fell to {kept:.0%} of their start"
    return None


def _rm_overfit(s: RunState, t: Mapping[str, float]) -> str | None:
    train, held = s.track("accuracy"), s.track("eval/accuracy")
    window = max(2, int(t["train_window"]))
    if held.count < 2 or train.count < window:
        return None
    seen = train.trimmed_mean(window)  # one batch of pairs is noisy and lumpy; many are not
    unseen = held.now(min(held.count, 3))
    if seen - unseen >= t["max_gap"]:
        return (
            f"training-pair accuracy {seen:.2f} is {seen - unseen:.2f} above held-out "
            f"accuracy {unseen:.2f}"
        )
    return None


def _rm_chance(s: RunState, t: Mapping[str, float]) -> str | None:
    held, pairs = s.track("eval/accuracy"), s.config.get("eval_pairs")
    late = [v for step, v in held.recent if step >= t["min_steps"]][-3:]  # a new head starts at 0.5
    if len(late) < 2 or (pairs is not None and pairs < t["min_eval_pairs"]):
        return None  # too early, or too few held-out pairs to tell 55% from chance
    mean = sum(late) / len(late)
    if mean <= t["max_accuracy"]:
        return f"held-out accuracy is {mean:.2f}, near the 0.50 of guessing"
    return None


def _grad_spike(s: RunState, t: Mapping[str, float]) -> str | None:
    """Two of the last three gradient norms far above the median of the steps before."""
    norms = s.track("grad_norm")
    before = norms.last(24)[:-3]  # a Track keeps 24: up to 21 steps before the last three
    if len(before) < max(1, t["min_steps"]):
        return None
    base, start = median(before), norms.start() or 0.0
    # back up at the level the run started from is the end of a quiet spell, not a spike
    high = [g for g in norms.last(3) if g >= t["factor"] * base and g > start]
    if base > 0 and len(high) >= 2:
        top = max(high)
        return f"the gradient norm jumped to {top:.3g}, {top / base:.0f}x its running median"
    return None


def _t(**values: float) -> Mapping[str, float]:
    return MappingProxyType(values)


POLICY_RL = ("rloo", "reinforce")
RULES: tuple[Rule, ...] = (
    Rule(
        "likelihood-displacement",
        ("dpo", "kto"),
        _t(logp_drop=0.5, kto_reward_drop=2.0, min_steps=4),
        "DPO: the mean per-token log-probs of chosen AND rejected responses both fall at least "
        "logp_drop nats below their start while both implicit rewards are below zero. KTO: the "
        "implicit rewards of desirable and undesirable examples are both at most -kto_reward_drop",
        "the policy is pushing probability off its preferred responses too, onto text that is in "
        "neither (likelihood displacement; with a high learning rate, the model being wrecked)",
        "a lower learning rate, a larger beta, pairs whose responses differ more, or an SFT term "
        "on the chosen responses (DPO-Positive, RPO)",
        ("pal2024", "razin2024", "rafailov2024q"),
        _displacement,
    ),
    Rule(
        "preference-saturation",
        ("dpo",),
        _t(min_accuracy=0.99, min_margin=5.0, min_steps=4),
        "every pair of the last three batches is ranked right (reward accuracy >= min_accuracy) "
        "and the median reward margin is at least min_margin (sigmoid loss only; IPO targets a "
        "fixed margin)",
        "the policy has memorised the preference pairs and is drifting from the reference with "
        "nothing left to learn from them (over-optimisation)",
        "fewer steps or epochs, more pairs, a larger beta, label smoothing, or the ipo loss",
        ("azar2023", "rafailov2024"),
        _saturation,
    ),
    Rule(
        "loss-rising",
        ("dpo", "reward"),
        _t(factor=2.0, min_steps=4),
        "the loss (median of the last 3 steps) is at least factor times its start",
        "the optimiser is making its own objective worse: the learning rate is too high for "
        "this model and setup",
        "a lower learning rate (or LoRA instead of full fine-tuning), and start a new run",
        ("rafailov2023", "wortsman2023"),
        _loss_rising,
    ),
    Rule(
        "kl-blowup",
        ("rloo", "reinforce", "kto"),
        _t(max_kl=10.0, max_slope=0.5, min_kl_for_slope=2.0, slope_window=8, min_steps=4),
        "the KL to the reference (median of the last 3 steps) exceeds max_kl nats per response, "
        "or is above min_kl_for_slope and rising faster than max_slope nats per step over the "
        "last slope_window steps (the episode then lasts until KL is back below min_kl_for_slope)",
        "the policy is moving far from the reference, where the reward stops tracking quality "
        "(reward over-optimisation)",
        "a larger kl_coef (or beta for KTO), a lower learning rate, or fewer steps",
        ("trl-faq", "gao2022", "ouyang2022", "zheng2023"),
        _kl_blowup,
    ),
    Rule(
        "kl-negative",
        ("rloo",),
        _t(max_kl=-0.5, min_steps=6),
        "the estimated KL to the reference (median of the last 5 steps) is below max_kl nats "
        "per response; a KL of samples from the policy cannot be negative in expectation",
        "the samples do not come from the distribution whose log-probs are scored: a sampling "
        "setting (top-k, top-p, min length, a different temperature) or padding counted as tokens",
        "sampling with the temperature the log-probs use and no top-k, top-p or minimum length",
        ("trl-faq",),
        _kl_negative,
    ),
    Rule(
        "length-hacking",
        ("rloo",),
        _t(growth=1.5, min_steps=6),
        "the mean response length (median of the last 5 steps) reaches growth times its start "
        "while the reward rises",
        "the reward model or rater pays for length, and the policy is buying reward with longer "
        "responses rather than better ones",
        "a length penalty or a rater that does not reward length, a larger kl_coef, a lower "
        "max_new_tokens, and checking a few responses by hand",
        ("singhal2023",),
        _length_hacking,
    ),
    Rule(
        "entropy-collapse",
        POLICY_RL,
        _t(fraction=0.3, min_steps=6),
        "the mean per-token entropy (median of the last 5 steps) falls to fraction of its start",
        "the policy has become nearly deterministic and stops exploring; rewards plateau and "
        "responses turn alike",
        "a larger kl_coef, a lower learning rate, a higher sampling temperature, or fewer steps",
        ("cui2025", "zheng2023"),
        _entropy_collapse,
    ),
    Rule(
        "repetition",
        POLICY_RL,
        _t(fraction=0.6, min_steps=6),
        "the distinct-bigram fraction of the rollouts (median of the last 5 steps) falls to "
        "fraction of its start",
        "responses are looping or collapsing onto a few phrasings (mode collapse), often because "
        "the reward pays for a phrase",
        "a larger kl_coef, a rater that penalises repetition, and reading a few responses",
        ("holtzman2019", "kirk2023"),
        _repetition,
    ),
    Rule(
        "reward-model-overfit",
        ("reward",),
        _t(max_gap=0.2, train_window=16),
        "training-pair accuracy (mean of the last train_window steps, the highest and lowest "
        "eighth left out) exceeds held-out accuracy (median of its last 3 readings) by max_gap "
        "or more; so it needs train_window steps and two held-out readings",
        "the reward model is memorising its training pairs rather than learning the preference; "
        "its scores on new responses will be unreliable",
        "fewer epochs (one is usual), more pairs, a lower learning rate, or LoRA",
        ("stiennon2020", "ouyang2022", "zhu2024"),
        _rm_overfit,
    ),
    Rule(
        "reward-model-chance",
        ("reward",),
        _t(max_accuracy=0.55, min_steps=20, min_eval_pairs=50),
        "the mean of the last (up to 3) held-out accuracy readings taken at or after step "
        "min_steps is at most max_accuracy; needs two such readings, and at least "
        "min_eval_pairs held-out pairs when the config gives eval_pairs",
        "the reward model has learned nothing that carries over to new pairs: the labels may be "
        "too noisy or inconsistent, or there are too few pairs",
        "checking annotator agreement, more or clearer pairs, more steps or a higher learning rate",
        ("ouyang2022",),
        _rm_chance,
    ),
    Rule(
        "grad-spike",
        ("reward", "dpo", "kto", "rloo", "reinforce"),
        _t(factor=10.0, min_steps=5),
        "two of the last three gradient norms are at least factor times the median of the "
        "(up to 21) steps before them and above the run's starting norm, after min_steps steps",
        "training is becoming unstable; such spikes often come before a loss spike or divergence",
        "a lower learning rate, a longer warm-up, or tighter gradient clipping (max_grad_norm)",
        ("molybog2023", "kumar2025", "wortsman2023"),
        _grad_spike,
    ),
)
RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


def rules_table() -> str:
    """The Markdown table of the rules, their algorithms and thresholds, as docs/diagnostics.md
    shows it between ``<!-- rules:start -->`` and ``<!-- rules:end -->``."""
    rows = ["| rule | applies to | thresholds |", "|---|---|---|"]
    for r in RULES:
        values = ", ".join(f"{k} = {v:g}" for k, v in r.thresholds.items())
        rows.append(f"| `{r.id}` | {', '.join(r.algos)} | {values} |")
    return "\n".join(rows)
