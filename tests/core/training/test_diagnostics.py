"""Diagnostics: every rule fires on a trace that shows its failure and stays silent on healthy
runs; one alert per episode; missing or odd metrics never raise; the doc matches the rule table;
the real traces (SmolLM2-135M-Instruct, traces/) behave as the brief requires."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import diagnostic_traces as syn
import pytest

from core.training.diagnostic_rules import RULES, RULES_BY_ID, rules_table
from core.training.diagnostic_sources import SOURCES
from core.training.diagnostics import MAX_ALERTS_PER_RULE, REARM_STEPS, Alert, Watcher, check_run

HERE = Path(__file__).parent
TRACES = HERE / "traces"


def rules_fired(algo: str, trace: syn.Trace, config: dict | None = None) -> list[str]:
    return [a.rule for a in check_run(algo, trace, config)]


def load_trace(name: str) -> tuple[str, dict, syn.Trace]:
    data = json.loads((TRACES / name).read_text())
    return data["algo"], data["config"], [(s["step"], s["metrics"]) for s in data["steps"]]


# ---- healthy runs stay silent ----------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(syn.HEALTHY))
@pytest.mark.parametrize("seed", range(12))
def test_healthy_runs_raise_nothing(algo: str, seed: int) -> None:
    assert rules_fired(algo, syn.HEALTHY[algo](seed=seed)) == []


WILD = [
    "loss",
    "kl",
    "entropy",
    "grad_norm",
    "logps/chosen_per_token",
    "completions/mean_length",
    "accuracy",
    "eval/accuracy",
]


@pytest.mark.parametrize("algo", sorted(syn.HEALTHY))
@pytest.mark.parametrize("name", WILD)
def test_one_wild_step_raises_nothing(algo: str, name: str) -> None:
    trace = syn.HEALTHY[algo](seed=1)
    for step in (12, len(trace) - 2):
        for factor in (25.0, -25.0, 0.01):
            assert rules_fired(algo, syn.with_spike(trace, name, step, factor)) == [], factor


# ---- each failure is caught -------------------------------------------------------------------
def _kl_rising_fast(step: int) -> float:
    return 0.0 if step < 10 else 1.0 * (step - 10)  # +1 nat per step from step 10


FAILURES = {  # rule -> (algo, seed -> a trace that shows the failure)
    "likelihood-displacement": (
        "dpo",
        lambda seed: syn.dpo(seed=seed, n=30, chosen_end=-1.5, rejected_end=-2.5),
    ),
    "preference-saturation": (
        "dpo",
        lambda seed: syn.dpo(seed=seed, n=30, acc_end=1.5, chosen_end=0.2, rejected_end=-1.0),
    ),
    "loss-rising": ("dpo", lambda seed: syn.dpo(seed=seed, n=20, loss_end=2.5)),
    "kl-blowup": ("rloo", lambda seed: syn.rloo(seed=seed, n=60, kl_end=20.0)),
    "kl-negative": ("rloo", lambda seed: syn.rloo(seed=seed, n=40, kl=lambda s: -0.1 * s)),
    "length-hacking": (
        "rloo",
        lambda seed: syn.rloo(seed=seed, n=60, length_start=40, length_end=90, reward_end=0.95),
    ),
    "entropy-collapse": ("rloo", lambda seed: syn.rloo(seed=seed, n=60, entropy_end=0.3)),
    "repetition": ("rloo", lambda seed: syn.rloo(seed=seed, n=60, distinct_end=0.25)),
    "reward-model-overfit": (
        "reward",
        lambda seed: syn.reward(seed=seed, n=40, train_end=1.0, eval_end=0.62),
    ),
    "reward-model-chance": (
        "reward",
        lambda seed: syn.reward(seed=seed, n=40, train_end=0.7, eval_end=0.5),
    ),
}


def test_every_rule_has_a_failure_trace_or_its_own_test() -> None:
    own_tests = {"grad-spike"}
    assert set(FAILURES) | own_tests == set(RULES_BY_ID)


@pytest.mark.parametrize("rule", sorted(FAILURES))
@pytest.mark.parametrize("seed", range(4))
def test_each_failure_raises_its_rule_once(rule: str, seed: int) -> None:
    algo, make = FAILURES[rule]
    fired = rules_fired(algo, make(seed))
    assert fired.count(rule) == 1, fired


def test_kl_rising_fast_is_caught_before_it_reaches_the_ceiling() -> None:
    alerts = check_run("rloo", syn.rloo(n=40, kl=_kl_rising_fast))
    blowup = [a for a in alerts if a.rule == "kl-blowup"]
    assert len(blowup) == 1 and "rising" in blowup[0].message
    assert blowup[0].step < 10 + RULES_BY_ID["kl-blowup"].thresholds["max_kl"]


def test_kto_desirable_and_undesirable_both_falling_is_displacement() -> None:
    assert "likelihood-displacement" in rules_fired("kto", syn.kto(chosen_end=-4, rejected_end=-6))
    assert "kl-blowup" in rules_fired("kto", syn.kto(kl_end=25.0))


def test_grad_norm_back_at_its_start_after_a_quiet_spell_is_no_spike() -> None:
    # late in a run whose loss is near zero the norm falls far; one hard batch brings it back
    quiet = [(s, {**m, "grad_norm": 3.0 if s <= 5 else 0.05}) for s, m in syn.dpo(n=40)]
    back = [(s, {**m, "grad_norm": 2.5}) if s in (30, 31) else (s, m) for s, m in quiet]
    assert "grad-spike" not in rules_fired("dpo", back)


def test_grad_spike_needs_two_of_three_steps() -> None:
    trace = syn.dpo(n=30, seed=3)
    one = syn.with_spike(trace, "grad_norm", 15, 40.0)
    two = syn.with_spike(one, "grad_norm", 16, 40.0)
    assert "grad-spike" not in rules_fired("dpo", one)
    assert rules_fired("dpo", two) == ["grad-spike"]


def test_ipo_runs_skip_the_margin_rule() -> None:
    trace = FAILURES["preference-saturation"][1](0)
    assert "preference-saturation" not in rules_fired("dpo", trace, {"loss_type": "ipo"})


def test_rules_apply_only_to_their_algorithms() -> None:
    # an RLOO-looking entropy collapse logged by a DPO run: no RLOO rule runs for DPO
    trace = [(s, {**m, "entropy": 2.0 if s < 5 else 0.1}) for s, m in syn.dpo(n=30)]
    assert rules_fired("dpo", trace) == []


def test_reinforce_kl_on_stored_samples_may_be_negative() -> None:
    # its "kl" is the log-ratio on samples it did not draw: negative is no sampling bug
    assert rules_fired("reinforce", syn.reinforce(n=60)) == []


# ---- episodes, never a flood ------------------------------------------------------------------
def _episodes(*on: range, n: int = 120) -> syn.Trace:
    """A KTO run whose KL is far too high during the ``on`` step ranges and healthy otherwise."""
    return [(s, {**m, "kl": 30.0 if any(s in r for r in on) else 1.0}) for s, m in syn.kto(n=n)]


def test_a_lasting_condition_alerts_once() -> None:
    assert rules_fired("kto", _episodes(range(10, 100))) == ["kl-blowup"]


def test_a_new_episode_after_a_clear_spell_alerts_again() -> None:
    gap = REARM_STEPS + 4  # clear long enough (the median lags a step or two)
    assert rules_fired("kto", _episodes(range(10, 20), range(20 + gap, 40 + gap))) == [
        "kl-blowup",
        "kl-blowup",
    ]
    short = rules_fired("kto", _episodes(range(10, 20), range(23, 40)))
    assert short == ["kl-blowup"]  # a brief dip is the same episode


def test_alerts_per_rule_are_capped() -> None:
    every = REARM_STEPS + 10  # each spell lasts 6 steps, then a clear spell long enough
    spells = [range(start, start + 6) for start in range(10, 20 * every, every)]
    fired = rules_fired("kto", _episodes(*spells, n=21 * every))
    assert fired == ["kl-blowup"] * MAX_ALERTS_PER_RULE


# ---- robustness and API -----------------------------------------------------------------------
@pytest.mark.parametrize("algo", sorted(syn.HEALTHY))
def test_missing_and_odd_metrics_never_raise(algo: str) -> None:
    w = Watcher(algo)
    odd = [
        {},
        {"loss": math.nan},
        {"kl": math.inf},
        {"grad_norm": -math.inf},
        {"loss": "0.5"},
        {"loss": None},
        {"loss": True},
        {"completions/distinct_2": 0.5},
    ]
    for step in range(1, 60):
        assert w.observe(step, odd[step % len(odd)]) == []
    for step, metrics in syn.HEALTHY[algo](seed=2):  # then a healthy run with a metric missing
        partial = {k: v for i, (k, v) in enumerate(sorted(metrics.items())) if i % 3}
        assert w.observe(60 + step, partial) == []


def test_alert_is_one_line_with_step_meaning_and_remedy() -> None:
    (alert,) = check_run("dpo", FAILURES["loss-rising"][1](0))
    assert isinstance(alert, Alert) and alert.severity == "warning"
    line = alert.line()
    assert "\n" not in line and line.startswith("alert: [loss-rising] ")
    assert f"step {alert.step}:" in line and "usually means" in line and "Try " in line


def test_config_overrides_and_switches_rules_off() -> None:
    trace = syn.dpo(n=20, loss_end=2.5)
    assert rules_fired("dpo", trace, {"diagnostics": {"loss-rising": None}}) == []
    assert rules_fired("dpo", trace, {"diagnostics": {"loss-rising": {"factor": 10.0}}}) == []
    with pytest.raises(ValueError, match="no threshold"):
        Watcher("dpo", {"diagnostics": {"loss-rising": {"facter": 3}}})
    with pytest.raises(ValueError, match="unknown rules"):
        Watcher("dpo", {"diagnostics": {"loss-rise": None}})
    with pytest.raises(ValueError, match="not one of"):
        Watcher("ppo")


def test_few_held_out_pairs_cannot_be_called_chance() -> None:
    trace = FAILURES["reward-model-chance"][1](0)
    assert "reward-model-chance" not in rules_fired("reward", trace, {"eval_pairs": 16})


# ---- the rule table and its doc ---------------------------------------------------------------
def test_rule_table_is_complete() -> None:
    for rule in RULES:
        assert rule.algos and set(rule.algos) <= {"reward", "dpo", "kto", "rloo", "reinforce"}
        assert rule.thresholds and rule.detects and rule.means and rule.remedy
        assert rule.sources and set(rule.sources) <= set(SOURCES), rule.id
        for name in rule.thresholds:
            assert (
                name in rule.detects
                or name == "min_steps"
                or name in ("kto_reward_drop", "slope_window")
            ), (rule.id, name)


def test_doc_lists_exactly_the_rules_with_their_thresholds() -> None:
    doc = (HERE.parents[2] / "docs" / "diagnostics.md").read_text()
    table = re.search(r"<!-- rules:start -->\n(.*?)\n<!-- rules:end -->", doc, re.S)
    assert table, "diagnostics.md lost its <!-- rules:start --> ... <!-- rules:end --> block"
    assert table.group(1) == rules_table(), "regenerate the table with rules_table()"
    sections = re.findall(r"^### `([a-z0-9-]+)`$", doc, re.M)
    assert sections == [r.id for r in RULES]
    for rule, body in zip(RULES, re.split(r"^### `[a-z0-9-]+`$", doc, flags=re.M)[1:], strict=True):
        for name, value in rule.thresholds.items():
            assert f"{name} = {value:g}" in body, (rule.id, name)
        for key in rule.sources:
            assert SOURCES[key].url in body, (rule.id, key)


# ---- real traces --------------------------------------------------------------------------------
def test_real_dpo_run_that_wrecks_the_model_is_caught() -> None:
    algo, config, trace = load_trace("dpo_full_lr1e-3_6steps.json")
    alerts = check_run(algo, trace, config)
    assert alerts and all(a.step <= 6 for a in alerts)
    assert "likelihood-displacement" in {a.rule for a in alerts}


def test_real_default_dpo_run_is_silent_for_its_first_20_steps() -> None:
    algo, config, trace = load_trace("dpo_default_lora.json")
    assert [a.line() for a in check_run(algo, trace[:20], config)] == []


@pytest.mark.parametrize("algo", sorted(syn.HEALTHY))
def test_tiny_warm_ups_and_windows_in_settings_never_raise(algo: str) -> None:
    tiny = {r.id: {name: 0 for name in r.thresholds} for r in RULES if algo in r.algos}
    w = Watcher(algo, {"diagnostics": tiny})
    for step, metrics in syn.HEALTHY[algo](seed=4)[:12]:
        w.observe(step, metrics)  # alerts are fine here; exceptions are not
