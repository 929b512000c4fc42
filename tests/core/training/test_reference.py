"""Reference log-probs: only for the examples training uses, once per example, in inference mode
without checkpointing, saved with the checkpoint and loaded by a resumed run; the losses are those
of computing every example's before the first step (what the trainer did before)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from core.training import config_for, train
from core.training.context import Context
from core.training.objective import Objective
from core.training.reference import ReferenceLogps
from core.training.resume import REFERENCE_FILE

GOOD = "Paris is the capital of France."
BAD = "bad terrible sad bad terrible sad"


def rated_pairs(store, n: int):
    """``n`` prompts, each with a GOOD and a BAD sample judged pairwise, by thumbs and by scores."""
    ids, _ = store.add_prompts([{"text": f"Question {i}?"} for i in range(n)], source="test")
    for pid in ids:
        good, bad = store.add_samples(
            [
                {"prompt_id": pid, "text": f"{GOOD} {pid}", "model": "x"},
                {"prompt_id": pid, "text": f"{BAD} {pid}", "model": "x"},
            ]
        )
        store.add_rating(
            annotator="a",
            kind="pairwise",
            sample_ids=[bad, good],
            value={"choice": "b", "winner": good},
        )
        store.add_rating(annotator="a", kind="thumbs", sample_ids=[good], value={"up": True})
        store.add_rating(annotator="a", kind="thumbs", sample_ids=[bad], value={"up": False})
        for sample, score in ((good, 1.0), (bad, 0.0)):
            store.add_rating(
                annotator="b",
                kind="score",
                sample_ids=[sample],
                value={"scores": {"overall": score}},
            )
    return store


def config(algo, model_dir, *, lora=True, **changes):
    cfg = config_for(algo, "cpu", lora=lora)
    cfg.model = str(model_dir)
    cfg.batch_size, cfg.steps, cfg.save_every, cfg.min_steps = 2, 6, 0, 0
    cfg.learning_rate = 1e-2 if lora else 2e-3
    for key, value in changes.items():
        setattr(cfg, key, value)
    return cfg


@pytest.fixture
def record(monkeypatch):
    """What the run used and computed: the examples of every step's micro-batches, and every
    index the reference passes computed (with the state of the model during each pass)."""
    seen = {"used": [], "computed": [], "states": []}
    real_batches, real_pass = Objective._rank_batches, Context.reference_pass

    def batches(self, ctx, step):
        out = real_batches(self, ctx, step)
        if len(seen["used"]) <= step:  # planned() also asks; count each step once
            seen["used"].append(sorted(i for b in out for i in b))
        return out

    def reference_pass(self, indices, lengths, fn, *args):
        def looking(chunk):
            model = self.model
            seen["states"].append(
                (
                    torch.is_inference_mode_enabled(),
                    model.training,
                    any(
                        getattr(m, "gradient_checkpointing", False) and m.training
                        for m in model.modules()
                    ),
                )
            )
            return fn(chunk)

        seen["computed"] += list(indices)
        return real_pass(self, indices, lengths, looking, *args)

    monkeypatch.setattr(Objective, "_rank_batches", batches)
    monkeypatch.setattr(Context, "reference_pass", reference_pass)
    return seen


@pytest.mark.parametrize("lora", [True, False])
@pytest.mark.parametrize("algo", ["dpo", "kto", "reinforce"])
def test_six_steps_compute_the_examples_they_use_and_no_other(
    project_with_prompts, tiny_model_dir, record, algo, lora
):
    store = rated_pairs(project_with_prompts, 20)  # 40 pairs, 40 thumbs, 40 scores
    steps = list(train(store, config(algo, tiny_model_dir, lora=lora, gradient_checkpointing=True)))
    assert len(steps) == 6
    used = {i for step in record["used"][:6] for i in step}
    assert sorted(record["computed"]) == sorted(used)  # exactly those, each once
    assert len(used) <= 12 < 40
    assert record["states"] and set(record["states"]) == {(True, False, False)}


@pytest.mark.parametrize("lora", [True, False])
def test_two_epochs_compute_each_example_once(project_with_prompts, tiny_model_dir, record, lora):
    store = rated_pairs(project_with_prompts, 3)  # six pairs: pairwise, and from the scores
    cfg = config("dpo", tiny_model_dir, lora=lora, steps=None, epochs=2.0)
    assert [m.step for m in train(store, cfg)] == [1, 2, 3, 4, 5, 6]
    assert sorted(record["computed"]) == list(range(6))


@pytest.mark.parametrize("lora", [True, False])
def test_a_resumed_run_loads_the_reference_log_probs(
    project_with_prompts, tiny_model_dir, record, lora
):
    store = rated_pairs(project_with_prompts, 20)
    cfg = config("dpo", tiny_model_dir, lora=lora, save_every=3)
    cancel = threading.Event()
    for m in train(store, cfg, cancel=cancel):
        if m.step == 3:
            cancel.set()
    run_id = m.run_id
    first = list(record["computed"])
    folder = Path(store.checkpoint("latest")["path"])
    from safetensors.torch import load_file

    saved = load_file(folder / REFERENCE_FILE)
    assert sorted(int(k) for k in saved) == sorted(first)
    record["computed"].clear()
    record["used"].clear()
    assert [m.step for m in train(store, None, resume_run_id=run_id)] == [4, 5, 6]
    later = {i for step in record["used"][3:6] for i in step}
    if lora:  # each step computes what no earlier step used
        assert sorted(record["computed"]) == sorted(later - set(first))
    else:  # the first run computed what all six steps use before its first step
        assert record["computed"] == [] and later <= set(first)


def losses(store, cfg, monkeypatch, everything_first: bool) -> list[float]:
    if everything_first:  # what the trainer did before: every example's, before the first step

        def start(self, ctx, planned):
            self.ensure(ctx, range(len(self.lengths)))

        monkeypatch.setattr(ReferenceLogps, "start", start)
    out = [m.metrics["loss"] for m in train(store, cfg)]
    monkeypatch.undo()
    return out


@pytest.mark.parametrize("lora", [True, False])
@pytest.mark.parametrize("algo", ["dpo", "kto", "reinforce"])
def test_losses_equal_those_of_computing_everything_first(
    project_with_prompts, tiny_model_dir, monkeypatch, algo, lora
):
    store = rated_pairs(project_with_prompts, 7)
    cfg = config(algo, tiny_model_dir, lora=lora, steps=4, batch_size=3)
    before = losses(store, cfg, monkeypatch, everything_first=True)
    now = losses(store, cfg, monkeypatch, everything_first=False)
    assert now == pytest.approx(before, rel=1e-4, abs=1e-5)
