"""Live training diagnostics: watch one run's per-step metrics and raise alerts a person can act on.

The training loop yields a dict of metrics (TRL names) after every optimizer step. A ``Watcher``
sees that stream for one run and returns ``Alert``s for the failure modes RLHF practitioners
watch for: DPO pushing both log-probabilities down, preferences memorised with exploding margins,
the loss climbing, KL to the reference blowing up or going negative, length hacking, entropy or
diversity collapse, a reward model memorising its pairs, and gradient spikes. The rules live in
diagnostic_rules.py (``RULES``, the single table of thresholds, reasons and remedies);
docs/diagnostics.md explains each one and a test keeps the two in step.

Rules compare smoothed values (the median of the last few readings against the median of the
run's first three) after a warm-up, so one noisy step never alerts. A metric that is missing
means a rule cannot apply yet, never an error. Each rule alerts once per *episode*: when its
condition starts to hold. It re-arms only after the condition has been clear for
``REARM_STEPS`` observations, and alerts at most ``MAX_ALERTS_PER_RULE`` times in one run.

Pure Python (no torch, no Qt): the CLI prints ``Alert.line()``, the Train tab shows the message.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from core.training.diagnostic_rules import RULES, Rule, RunState, Track

ALGOS = ("reward", "dpo", "kto", "rloo", "reinforce")
REARM_STEPS = 20  # a rule fires again only after its condition was clear this many observations
MAX_ALERTS_PER_RULE = 3  # and never more often than this in one run


@dataclass(frozen=True)
class Alert:
    """One finding: which rule, at which step, and a one-line message for a person."""

    rule: str
    step: int
    message: str
    severity: str = "warning"

    def line(self) -> str:
        """The alert as one line for the CLI."""
        return f"alert: [{self.rule}] {self.message}"


class Watcher:
    """Watches one run's metrics; ``observe`` returns the alerts each step raises.

    ``config`` is the run's training config as a dict (``TrainConfig.to_dict()``): the rules read
    ``loss_type`` and, for the reward model, ``eval_pairs`` from it, and per-rule overrides from
    ``config["diagnostics"]``: ``{"rule-id": {"threshold": value}}``, or ``{"rule-id": None}`` to
    switch a rule off. One Watcher per run; a resumed run replays its stored steps first
    (``replay``), so its starts are those of the run, not of the resume.
    """

    def __init__(self, algo: str, config: Mapping[str, Any] | None = None) -> None:
        if algo not in ALGOS:
            raise ValueError(f"algo {algo!r} is not one of {', '.join(ALGOS)}")
        self.algo = algo
        self.state = RunState(algo, dict(config or {}))
        overrides = dict(self.state.config.get("diagnostics") or {})
        unknown = sorted(set(overrides) - {r.id for r in RULES})
        if unknown:
            raise ValueError(f"diagnostics settings name unknown rules: {', '.join(unknown)}")
        self.rules: list[tuple[Rule, Mapping[str, float]]] = []
        for rule in RULES:
            if algo not in rule.algos or (rule.id in overrides and overrides[rule.id] is None):
                continue
            given = dict(overrides.get(rule.id) or {})
            bad = sorted(set(given) - set(rule.thresholds))
            if bad:
                raise ValueError(
                    f"rule {rule.id} has no threshold {', '.join(bad)}; it has "
                    f"{', '.join(rule.thresholds)}"
                )
            self.rules.append((rule, MappingProxyType({**rule.thresholds, **given})))
        self._clear_for: dict[str, int] = {}
        self._fired: dict[str, int] = {}

    def observe(self, step: int, metrics: Mapping[str, Any]) -> list[Alert]:
        """Add one optimizer step's metrics; returns the alerts whose episode began at it."""
        self.state.steps += 1
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue  # text, None, tensors: not a metric value
            if math.isfinite(value):  # NaN and inf are the training loop's guard, not ours
                self.state.tracks.setdefault(name, Track()).add(step, float(value))
        alerts = []
        for rule, thresholds in self.rules:
            what = rule.check(self.state, thresholds)
            if what is None:
                self._clear_for[rule.id] = self._clear_for.get(rule.id, 0) + 1
                if self._clear_for[rule.id] >= REARM_STEPS:
                    self.state.active.discard(rule.id)
                continue
            self._clear_for[rule.id] = 0
            if rule.id in self.state.active or self._fired.get(rule.id, 0) >= MAX_ALERTS_PER_RULE:
                continue
            self.state.active.add(rule.id)
            self._fired[rule.id] = self._fired.get(rule.id, 0) + 1
            message = f"step {step}: {what}; this usually means {rule.means}. Try {rule.remedy}."
            alerts.append(Alert(rule.id, step, message))
        return alerts

    def replay(self, steps: Iterable[tuple[int, Mapping[str, Any]]]) -> list[Alert]:
        """Feed many steps in order; all their alerts. For a stored run, or for a resumed run's
        history (whose alerts were shown when they happened: the caller may drop them)."""
        return [alert for step, metrics in steps for alert in self.observe(step, metrics)]


def check_run(
    algo: str,
    steps: Iterable[tuple[int, Mapping[str, Any]]],
    config: Mapping[str, Any] | None = None,
) -> list[Alert]:
    """Every alert a run's stored metrics raise, in step order."""
    return Watcher(algo, config).replay(steps)
