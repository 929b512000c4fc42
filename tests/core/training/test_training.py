"""The training loop on a tiny model: every algorithm learns, logs and checkpoints; pause, stop,
resume, the NaN and OOM guards, the ratings snapshot, and the headless command."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from core.errors import UserError
from core.training import (
    ALGOS,
    StepMetrics,
    TrainingError,
    config_for,
    config_from_dict,
    default_lr,
    train,
)

GOOD = "Paris is the capital of France."
BAD = "bad terrible sad bad terrible sad"
VOWEL_RATER = "def score(prompt, response):\n    return sum(c in 'aeiou' for c in response) / max(1, len(response))\n"


@pytest.fixture(autouse=True)
def _one_thread():
    """A tiny model gains nothing from threads, and on a busy machine OpenMP threads waiting for
    each other make it many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def rated(project_with_prompts):
    """Five prompts, each with a GOOD and a BAD sample judged pairwise, by thumbs and by scores."""
    store = project_with_prompts
    for pid in range(1, 6):
        good, bad = store.add_samples(
            [
                {"prompt_id": pid, "text": GOOD, "model": "x"},
                {"prompt_id": pid, "text": BAD, "model": "x"},
            ]
        )
        store.add_rating(
            annotator="ann",
            kind="pairwise",
            sample_ids=[bad, good],
            value={"choice": "b", "winner": good},
        )
        store.add_rating(annotator="ann", kind="thumbs", sample_ids=[good], value={"up": True})
        store.add_rating(annotator="ann", kind="thumbs", sample_ids=[bad], value={"up": False})
        store.add_rating(
            annotator="bob", kind="score", sample_ids=[good], value={"scores": {"overall": 1.0}}
        )
        store.add_rating(
            annotator="bob", kind="score", sample_ids=[bad], value={"scores": {"overall": 0.0}}
        )
    return store


def make_config(algo, model_dir, tmp_path=None, **changes):
    cfg = config_for(algo, "cpu", lora=changes.pop("lora", True))
    cfg.model = str(model_dir)
    cfg.batch_size, cfg.steps, cfg.save_every = 4, 3, 0
    cfg.learning_rate = 1e-2 if cfg.lora else 2e-3
    if algo == "rloo":
        rater = tmp_path / "vowels.py"
        rater.write_text(VOWEL_RATER)
        cfg.rater, cfg.max_new_tokens, cfg.num_samples = f"{rater}:score", 6, 2
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


def run_all(store, cfg, **kw) -> list[StepMetrics]:
    return list(train(store, cfg, **kw))


def metric_rows(store, run_id):
    return {
        (r["step"], r["name"]): r["value"]
        for r in store.db.query("SELECT * FROM metrics WHERE run_id = ?", [run_id])
    }


# ---- configs ------------------------------------------------------------------------------------
def test_configs_have_help_and_device_defaults():
    for algo in ALGOS:
        cpu, gpu = config_for(algo, "cpu"), config_for(algo, "cuda")
        assert cpu.algo == algo and cpu.lora and not cpu.bf16
        assert not gpu.lora and cpu.learning_rate == default_lr(algo, True)
        assert gpu.learning_rate == default_lr(algo, False) < cpu.learning_rate
        for f in dataclasses.fields(cpu):
            assert f.metadata.get("help"), f"{algo}.{f.name} has no help text"
        assert config_from_dict(json.loads(json.dumps(cpu.to_dict()))) == cpu
    assert config_for("dpo", "cpu", lora=False).learning_rate == 3e-5
    # fewer tokens per pass with LoRA on a CPU (peak memory), more on a GPU (speed)
    assert config_for("dpo", "cpu").forward_tokens == 256
    assert config_for("dpo", "cpu", lora=False).forward_tokens == 512
    assert config_for("dpo", "cuda").forward_tokens == 16384


# ---- every algorithm ---------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGOS)
def test_full_finetune_logs_metrics_and_changes_every_weight(rated, tiny_model_dir, tmp_path, algo):
    cfg = make_config(algo, tiny_model_dir, tmp_path, lora=False, steps=2)
    steps = run_all(rated, cfg)
    assert [m.step for m in steps] == [1, 2] and steps[-1].checkpoint_id is not None
    run_id = steps[0].run_id
    names = {n for _, n in metric_rows(rated, run_id)}
    expected = {
        "reward": {"loss", "accuracy", "margin", "mean_reward"},
        "dpo": {
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
        },
        "kto": {"loss", "rewards/chosen", "rewards/rejected", "kl"},
        "rloo": {"reward", "reward_std", "kl", "entropy", "loss", "clip_ratio"},
        "reinforce": {"reward", "kl", "loss"},
    }[algo]
    assert expected | {"grad_norm", "learning_rate", "tokens_per_second", "step_time"} <= names
    rec = rated.checkpoint(steps[-1].checkpoint_id)
    assert rec["kind"] == ("reward" if algo == "reward" else "policy") and not rec["adapter"]
    after = load_file(Path(rec["path"]) / "model.safetensors")
    before = load_file(tiny_model_dir / "model.safetensors")
    compared = 0
    for name, old in before.items():
        key = name if name in after else name.replace("lm_head", "model.embed_tokens")
        if algo == "reward" and not name.startswith("model."):
            continue  # the reward model has a scalar head instead of the LM head
        assert not torch.equal(after[key], old), f"{algo}: {name} did not change"
        compared += 1
    assert compared >= 10
    run = rated.db["runs"].get(run_id)
    assert run["status"] == "finished" and json.loads(run["config"])["algo"] == algo
    if algo != "rloo":
        assert json.loads(run["rating_ids"])


@pytest.mark.parametrize("algo", ["dpo", "reward", "kto"])
def test_trivial_preference_is_learned_with_lora(rated, tiny_model_dir, tmp_path, algo):
    cfg = make_config(algo, tiny_model_dir, tmp_path, steps=8)
    steps = run_all(rated, cfg)
    first, last = steps[0].metrics, steps[-1].metrics
    if algo == "dpo":
        assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-5)  # policy == reference
        assert last["rewards/accuracies"] == 1.0
        assert last["rewards/margins"] > 0.5 and last["loss"] < first["loss"]
    elif algo == "reward":
        assert last["accuracy"] == 1.0 and last["margin"] > first["margin"] + 1.0
    else:
        assert last["loss"] < first["loss"]
    rec = rated.checkpoint(steps[-1].checkpoint_id)
    assert rec["adapter"] and (Path(rec["path"]) / "adapter_model.safetensors").is_file()
    lora_b = [
        v
        for k, v in load_file(Path(rec["path"]) / "adapter_model.safetensors").items()
        if "lora_B" in k
    ]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # every adapter moved off its init


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_reward_checkpoint_scores_like_transformers(rated, tiny_model_dir, tmp_path, pooling):
    """A full reward checkpoint loads in transformers unchanged and gives the app's scores: its
    own sequence-classifier output for `last` pooling, its head on the mean of the response
    tokens' hidden states for `mean` (the recipe the model card gives)."""
    from transformers import AutoModelForSequenceClassification

    from core.models import format_prompt
    from core.models.reward import load_reward_model, score_texts

    steps = run_all(
        rated,
        make_config(
            "reward", tiny_model_dir, lora=False, steps=6, learning_rate=3e-3, pooling=pooling
        ),
    )
    rm = load_reward_model(rated, f"checkpoint:{steps[-1].checkpoint_id}", device="cpu")
    assert rm.pooling == pooling  # recorded with the checkpoint
    prompts = ["What is the capital of France?", "Say hello."]
    good, bad = score_texts(rm, prompts, [GOOD, GOOD]), score_texts(rm, prompts, [BAD, BAD])
    assert min(good) > max(bad)
    hf = AutoModelForSequenceClassification.from_pretrained(
        rated.checkpoint(rm.checkpoint_id)["path"]
    )
    text = format_prompt(rm.tokenizer, [{"role": "user", "content": prompts[0]}])
    prompt_ids = rm.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + rm.tokenizer(GOOD, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        if pooling == "last":
            hf_score = hf(torch.tensor([ids])).logits.item()
        else:  # the recipe the exported model card gives, run as written
            from core.exchange import export_checkpoint

            export_checkpoint(rated, rm.checkpoint_id, tmp_path / "rm")
            card = (tmp_path / "rm" / "README.md").read_text(encoding="utf-8")
            recipe = card.split("## How it scores")[1].split("```python")[1].split("```")[0]
            namespace: dict = {}
            exec(recipe, namespace)  # noqa: S102 - our own card's snippet
            hf_score = namespace["reward"](hf, rm.tokenizer, prompts[0], GOOD)
    assert hf_score == pytest.approx(good[0], abs=1e-4)


def test_reward_pooling_reads_the_response(tiny_model_dir):
    """Mean pooling averages the response tokens only (the prompt and padding do not count);
    a row without response tokens falls back to its last real token."""
    from transformers import AutoModelForCausalLM

    from core.models.batching import Seq, collate
    from core.models.reward import RewardScores, to_reward_model

    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = to_reward_model(lm, 0, "mean").eval()
    seqs = [Seq([5, 6, 7], [8, 9]), Seq([5, 6], [8, 9, 10, 11]), Seq([5, 6, 7, 8], [])]
    batch = collate(seqs, 0, "cpu")
    with torch.no_grad():
        got = RewardScores(model, "mean")(
            batch.input_ids, batch.attention_mask, batch.completion_mask
        )
        for row, s in enumerate(seqs):
            hidden = model.model(torch.tensor([s.prompt + s.completion])).last_hidden_state[0]
            pooled = hidden[len(s.prompt) :].mean(0) if s.completion else hidden[-1]
            assert got[row].item() == pytest.approx(model.score(pooled).item(), abs=1e-5)
        last = RewardScores(model, "last")(batch.input_ids, batch.attention_mask)
        assert last[2].item() == pytest.approx(got[2].item(), abs=1e-6)
        assert not torch.allclose(last[:2], got[:2])


def test_rloo_with_a_reward_checkpoint_and_reinforce_raise_what_they_reward(
    rated, tiny_model_dir, tmp_path
):
    run_all(rated, make_config("reward", tiny_model_dir, steps=3))
    cfg = make_config(
        "rloo", tiny_model_dir, tmp_path, rater=None, steps=4, rollouts_per_sampling=1
    )  # sampled afresh at step 3: KL > 0 there
    steps = run_all(rated, cfg)  # reward_model empty: the newest reward checkpoint scores
    run = rated.db["runs"].get(steps[0].run_id)
    assert json.loads(run["config"])["reward_model"] == "checkpoint:1"
    assert all(m.metrics["reward_std"] > 0 for m in steps[::2])  # a new rollout every 2 steps
    assert any(m.metrics["clip_ratio"] >= 0 for m in steps) and steps[-1].metrics["kl"] != 0.0

    # REINFORCE: the policy's log-prob of the well-scored answer rises against the badly scored one
    from core.models import load_model
    from core.models.batching import CompletionLogps, Tokens, collate, policy_logps

    cfg = make_config("reinforce", tiny_model_dir, steps=8, kl_coef=0.0)
    ckpt = run_all(rated, cfg)[-1].checkpoint_id

    def margin(spec):
        lm = load_model(spec, store=rated, device="cpu")
        tok = Tokens(rated, lm.tokenizer, 128, eos=True)
        batch = collate([tok.seq(1, 1), tok.seq(1, 2)], lm.tokenizer.pad_token_id, "cpu")
        with torch.no_grad():
            flat, _ = policy_logps(CompletionLogps(lm.model), batch)
        good, bad = batch.sums(flat).tolist()
        return good - bad

    assert margin(f"checkpoint:{ckpt}") > margin(str(tiny_model_dir)) + 1.0


@pytest.mark.parametrize("baseline", ["mean", "prompt"])
def test_reinforce_baseline_compares_a_score_with_all_or_with_its_prompt(
    project_with_prompts, tiny_model_dir, baseline
):
    """A prompt whose answers all score high teaches nothing about answers with the per-prompt
    (leave-one-out) baseline; with the mean of all scores both of its answers are pushed up."""
    from core.training.session import setup_session

    store = project_with_prompts
    scores = {1: (0.9, 1.0), 2: (0.0, 0.1), 3: (0.5,)}  # prompt 3: one scored answer
    for pid, values in scores.items():
        ids = store.add_samples(
            [{"prompt_id": pid, "text": f"answer {j}", "model": "x"} for j in range(len(values))]
        )
        for sid, v in zip(ids, values, strict=True):
            store.add_rating(
                annotator="bob", kind="score", sample_ids=[sid], value={"scores": {"overall": v}}
            )
    cfg = make_config("reinforce", tiny_model_dir, baseline=baseline)
    obj = setup_session(store, cfg, None, None).objective
    pairs = zip(obj.examples, obj.advantages.tolist(), strict=True)
    got = {(e.prompt_id, e.reward): a for e, a in pairs}
    mean = 0.5  # of all five scores
    expected = {
        "mean": {(p, v): v - mean for p, vs in scores.items() for v in vs},
        "prompt": {(1, 0.9): -0.1, (1, 1.0): 0.1, (2, 0.0): -0.1, (2, 0.1): 0.1, (3, 0.5): 0.0},
    }[baseline]
    assert got == pytest.approx(expected)
    old_run = {k: v for k, v in cfg.to_dict().items() if k != "baseline"}
    assert config_from_dict(old_run).baseline == "mean"  # runs from before the setting
    with pytest.raises(UserError, match="baseline 'median' is not prompt or mean"):
        make_config("reinforce", tiny_model_dir, baseline="median").validate()


def test_rloo_samples_from_the_policy_with_its_adapter_and_cuts_at_eos(
    rated, tiny_model_dir, tmp_path, monkeypatch
):
    """The lean sampler drives the peft model's base model, whose layers carry the adapter; the
    model.generate path (for models the lean loop cannot drive) gives completions of the same
    shape: K per prompt, each ending at its first end-of-sequence token or at max_new_tokens."""
    import core.generation
    from core.training.session import setup_session

    cfg = make_config("rloo", tiny_model_dir, tmp_path, max_new_tokens=12, num_samples=3)
    session = setup_session(rated, cfg, None, None)
    obj, ctx = session.objective, session.ctx
    eos = ctx.tokenizer.eos_token_id
    prompts = [obj.tokens.prompt(p) for p in obj.prompt_ids[:3]]

    def sample() -> list[list[int]]:
        torch.manual_seed(0)
        rows = obj._sample(ctx, prompts)
        assert len(rows) == 3 * 3
        assert all(0 < len(r) <= 12 and eos not in r[:-1] for r in rows)
        assert all(r[-1] == eos or len(r) == 12 for r in rows)
        return rows

    with torch.no_grad():  # a large adapter: the policy differs clearly from the base model
        for name, p in ctx.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 2.0)
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        assert torch.equal(ctx.model(input_ids=ids).logits, ctx.model.get_base_model()(ids).logits)
        with ctx.model.disable_adapter():
            base = ctx.model(input_ids=ids).logits
        assert not torch.allclose(base, ctx.model(input_ids=ids).logits)
    lean = sample()
    assert sample() == lean  # seeded by the rollout
    # a repetition penalty in the model's generation config would bend the samples away from
    # the distribution the log-probs use: rloo ignores it
    ctx.model.get_base_model().generation_config.repetition_penalty = 1.5
    assert sample() == lean
    monkeypatch.setattr(core.generation, "lean_loop_can_drive", lambda model: False)
    assert sample() != lean  # model.generate draws differently, from the same policy


def test_rloo_samples_several_rollouts_in_one_pass(rated, tiny_model_dir, tmp_path, monkeypatch):
    from core.training.rloo import RLOOObjective

    passes = []
    sample = RLOOObjective._sample

    def counting(self, ctx, prompts, rollouts=1):
        passes.append((len(prompts), rollouts))
        return sample(self, ctx, prompts, rollouts)

    monkeypatch.setattr(RLOOObjective, "_sample", counting)
    cfg = make_config("rloo", tiny_model_dir, tmp_path, steps=8, rollouts_per_sampling=3)
    steps = run_all(rated, cfg)
    assert [m.step for m in steps] == list(range(1, 9))
    per_rollout = cfg.batch_size * cfg.grad_accum // cfg.num_samples  # prompts
    # 4 rollouts of 2 steps each: one pass for rollouts 0-2, one for rollout 3 (the plan's last)
    assert passes == [(3 * per_rollout, 3), (per_rollout, 1)]
    assert all(math.isfinite(m.metrics["loss"]) for m in steps)
    assert rated.db["runs"].get(steps[0].run_id)["status"] == "finished"


# ---- pause, stop, resume -----------------------------------------------------------------------
def test_pause_stop_and_resume_continue_the_same_run(rated, tiny_model_dir):
    cfg = make_config("dpo", tiny_model_dir, steps=6, learning_rate=3e-3)
    reference = [m.metrics["loss"] for m in run_all(rated, cfg)]

    cancel, pause = threading.Event(), threading.Event()
    gen = train(rated, dataclasses.replace(cfg), cancel=cancel, pause=pause)
    first = next(gen)
    run_id = first.run_id
    next(gen)
    pause.set()
    from core.store import ProjectStore

    other = ProjectStore(rated.path)  # the GUI thread would look through its own connection
    threading.Timer(0.6, pause.clear).start()
    t0 = time.perf_counter()
    third = next(gen)  # blocks while paused
    assert time.perf_counter() - t0 >= 0.5 and third.step == 3
    assert other.db["runs"].get(run_id)["status"] == "running"
    cancel.set()
    assert list(gen) == []
    run = other.db["runs"].get(run_id)
    assert run["status"] == "stopped" and "step 3" in run["message"]
    ckpts = list(other.db.query("SELECT * FROM checkpoints WHERE run_id = ?", [run_id]))
    assert [c["step"] for c in ckpts] == [3]

    resumed = list(train(rated, None, resume_run_id=run_id))
    assert [m.step for m in resumed] == [4, 5, 6] and {m.run_id for m in resumed} == {run_id}
    losses = [first.metrics["loss"]] + [metric_rows(rated, run_id)[(s, "loss")] for s in (2, 3)]
    losses += [m.metrics["loss"] for m in resumed]
    assert losses == pytest.approx(reference, rel=1e-4, abs=1e-5)  # optimizer + schedule restored
    assert other.db["runs"].get(run_id)["status"] == "finished"
    assert len(metric_rows(rated, run_id)) == 6 * len(first.metrics)
    with pytest.raises(Exception, match="already did all"):
        list(train(rated, None, resume_run_id=run_id))
    other.close()


def test_stop_during_the_reference_pass_stops_before_the_first_step(rated, tiny_model_dir):
    """Full fine-tuning computes the reference log-probs of every planned step before the first
    (a minute for a few hundred pairs on a CPU): Stop must not wait for it."""

    class SetAfter(threading.Event):  # becomes set once the reference pass has begun
        looks = 0

        def is_set(self):
            self.looks += 1
            return self.looks > 1

    cancel = SetAfter()
    cfg = make_config("dpo", tiny_model_dir, steps=4, lora=False)
    assert list(train(rated, cfg, cancel=cancel)) == []
    run = rated.db["runs"].get(1)
    assert run["status"] == "stopped" and "before the first step" in run["message"]
    assert rated.count("checkpoints") == 0 and rated.count("metrics") == 0
    resumed = list(train(rated, None, resume_run_id=run["id"]))  # starts again from step 0
    assert [m.step for m in resumed] == [1, 2, 3, 4]


def test_paused_status_is_visible_while_waiting(rated, tiny_model_dir):
    pause = threading.Event()
    gen = train(rated, make_config("dpo", tiny_model_dir, steps=2), pause=pause)
    run_id = next(gen).run_id
    pause.set()
    threading.Timer(0.5, pause.clear).start()
    from core.store import ProjectStore

    statuses = []

    def watch():  # the GUI thread looks through its own connection
        time.sleep(0.25)
        with ProjectStore(rated.path) as other:
            statuses.append(other.db["runs"].get(run_id)["status"])

    t = threading.Thread(target=watch)
    t.start()
    next(gen)
    t.join()
    assert statuses == ["paused"]
    list(gen)


# ---- guards ------------------------------------------------------------------------------------
def test_nan_guard_fails_the_run_and_keeps_the_last_good_checkpoint(rated, tiny_model_dir):
    from core.checkpoints import sha256_file

    cfg = make_config("dpo", tiny_model_dir, lora=False, steps=5, save_every=1, learning_rate=1e30)
    seen = []
    with pytest.raises(TrainingError, match=r"diverged at step (\d)") as err:
        for m in train(rated, cfg):
            seen.append(m)
    step = seen[-1].step + 1
    assert f"step {step}" in str(err.value) and f"checkpoint:{seen[-1].checkpoint_id}" in str(
        err.value
    )
    run = rated.db["runs"].get(seen[0].run_id)
    assert run["status"] == "failed" and f"step {step}" in run["message"]
    rec = rated.checkpoint(seen[-1].checkpoint_id)
    assert sha256_file(Path(rec["path"]) / "model.safetensors") == rec["sha256"]


def test_out_of_memory_says_what_to_try(rated, tiny_model_dir, monkeypatch):
    from core.training.dpo import DPOObjective

    def oom(self, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(DPOObjective, "loss", oom)
    with pytest.raises(TrainingError, match="out of memory at step 1") as err:
        run_all(rated, make_config("dpo", tiny_model_dir, lora=False))
    assert "LoRA" in str(err.value) and "--batch-size 2" in str(err.value)
    assert rated.db["runs"].get(1)["status"] == "failed"


def test_nothing_to_train_on_is_a_user_error_before_any_run(project_with_prompts, tiny_model_dir):
    from core.errors import UserError

    with pytest.raises(UserError, match="no preference pairs"):
        run_all(project_with_prompts, make_config("dpo", tiny_model_dir))
    assert project_with_prompts.count("runs") == 0


# ---- data snapshot, closing the loop -------------------------------------------------------------
def test_run_trains_on_the_ratings_that_existed_at_start(rated, tiny_model_dir):
    from core.store import ProjectStore

    gen = train(rated, make_config("dpo", tiny_model_dir, steps=2))
    run_id = next(gen).run_id
    annotator = ProjectStore(rated.path)  # another annotator rates meanwhile
    late = annotator.add_rating(
        annotator="carol", kind="pairwise", sample_ids=[1, 2], value={"choice": "a", "winner": 1}
    )
    list(gen)
    used = json.loads(rated.db["runs"].get(run_id)["rating_ids"])
    assert late not in used and set(used) == {
        r["id"] for r in rated.ratings(kinds=["pairwise", "score"]) if r["id"] != late
    }
    annotator.close()


def test_new_checkpoint_becomes_the_generator(rated, tiny_model_dir):
    from core.generation import GenerationParams, generate_samples
    from core.models import load_model

    run_all(rated, make_config("reward", tiny_model_dir, steps=1))
    steps = run_all(rated, make_config("dpo", tiny_model_dir, steps=2))
    assert rated.checkpoint("checkpoint:latest")["id"] == steps[-1].checkpoint_id  # not the reward
    lm = load_model("checkpoint:latest", store=rated, device="cpu")
    assert lm.spec == f"checkpoint:{steps[-1].checkpoint_id}"
    progress = list(
        generate_samples(
            rated, lm, GenerationParams(per_prompt=2, max_new_tokens=4, seed=1), prompt_ids=[1]
        )
    )
    rows = [rated.db["samples"].get(i) for i in progress[-1].sample_ids]
    assert {(r["model"], r["checkpoint_id"]) for r in rows} == {(lm.spec, lm.checkpoint_id)}


# ---- the headless command ----------------------------------------------------------------------
def test_train_command(rated, tiny_model_dir, capsys):
    import main

    db = str(rated.path)
    code = main.main(
        [
            "--db",
            db,
            "--device",
            "cpu",
            "train",
            "--algo",
            "dpo",
            "--steps",
            "2",
            "--model",
            str(tiny_model_dir),
            "--batch-size",
            "2",
            "--lr",
            "0.01",
        ]
    )
    out = capsys.readouterr()
    assert code == 0 and "run 1 finished" in out.out and "checkpoint:1 (step 2, policy)" in out.out
    assert json.loads(rated.db["runs"].get(1)["config"])["learning_rate"] == 0.01
    code = main.main(["--db", db, "train", "--algo", "reward", "--beta", "0.2"])
    assert code == 2 and "--beta does not apply to --algo reward" in capsys.readouterr().err
    code = main.main(["--db", db, "train", "--algo", "dpo", "--pooling", "last"])
    assert code == 2 and "--pooling does not apply to --algo dpo" in capsys.readouterr().err
    code = main.main(
        [
            "--db",
            db,
            "--device",
            "cpu",
            "train",
            "--algo",
            "reward",
            "--steps",
            "1",
            "--model",
            str(tiny_model_dir),
            "--pooling",
            "last",
        ]
    )
    assert code == 0 and json.loads(rated.db["runs"].get(2)["config"])["pooling"] == "last"
    code = main.main(
        ["--db", db, "--device", "cpu", "train", "--algo", "dpo", "--resume", "1", "--steps", "3"]
    )
    assert code == 0 and rated.count("metrics", "run_id = 1 AND name = 'loss'") == 3


def test_train_set_reaches_every_setting_with_its_type(rated, tiny_model_dir, capsys):
    import main

    db = str(rated.path)
    code = main.main(
        [
            "--db",
            db,
            "--device",
            "cpu",
            "train",
            "--algo",
            "dpo",
            "--steps",
            "1",
            "--model",
            str(tiny_model_dir),
            "--set",
            "forward_tokens=64",
            "--set",
            "lr_schedule=cosine",
            "--set",
            "annotators=ann, carol",
            "--set",
            "min-steps=3",
            "--set",
            "lora=false",
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = json.loads(rated.db["runs"].get(1)["config"])
    assert (saved["forward_tokens"], saved["lr_schedule"], saved["annotators"]) == (
        64,
        "cosine",
        ["ann", "carol"],
    )
    assert (saved["min_steps"], saved["lora"]) == (3, False)
    args = main.build_parser().parse_args(
        [
            "train",
            "--algo",
            "rloo",
            "--set",
            "rollouts_per_sampling=4",
            "--set",
            "lora=no",
            "--set",
            "steps=none",
            "--set",
            "bf16=yes",
        ]
    )
    from core.cli.train import config_from_args
    from core.training import default_lr

    cfg = config_from_args(args)
    assert (cfg.rollouts_per_sampling, cfg.lora, cfg.steps, cfg.bf16) == (4, False, None, True)
    assert cfg.learning_rate == default_lr("rloo", False)  # --set lora picks the rate as --full
    args.settings.append("learning_rate=2e-6")
    assert config_from_args(args).learning_rate == 2e-6
    for bad, says in [
        ("forward_tokens=lots", "forward_tokens takes a whole number"),
        ("lora=maybe", "lora takes true or false"),
        ("lr_schedule=step", "choose one of linear, cosine, constant"),
        ("beta=0.2", "'beta' is not a setting of --algo rloo"),
        ("algo=dpo", "'algo' is not a setting"),
        ("forward_tokens", "FIELD=VALUE"),
    ]:
        code = main.main(["--db", db, "train", "--algo", "rloo", "--set", bad])
        assert code == 2 and says in capsys.readouterr().err, bad


# ---- options -----------------------------------------------------------------------------------
def test_gradient_checkpointing_and_bf16_autocast_run(rated, tiny_model_dir):
    plain = run_all(rated, make_config("dpo", tiny_model_dir, steps=2))
    checkpointed = run_all(
        rated, make_config("dpo", tiny_model_dir, steps=2, gradient_checkpointing=True)
    )
    assert [m.metrics["loss"] for m in checkpointed] == pytest.approx(
        [m.metrics["loss"] for m in plain], rel=1e-4
    )
    # the CUDA default (bf16 autocast, LoRA over bf16 base weights) also runs on a CPU
    bf16 = run_all(rated, make_config("dpo", tiny_model_dir, steps=2, bf16=True))
    assert bf16[0].metrics["loss"] == pytest.approx(0.6931, abs=0.01)
    assert all(torch.isfinite(torch.tensor(m.metrics["loss"])) for m in bf16)


def test_heldout_prompts_are_stable_and_never_trained_on(rated):
    from core.training.rloo import split_prompts

    train_ids, heldout = split_prompts(rated, 0.4)
    assert sorted(train_ids + heldout) == [1, 2, 3, 4, 5] and (train_ids, heldout) == split_prompts(
        rated, 0.4
    )
    assert split_prompts(rated, 0.0) == ([1, 2, 3, 4, 5], [])


@pytest.mark.parametrize("algo", ALGOS)
def test_small_forward_passes_give_the_same_training(rated, tiny_model_dir, tmp_path, algo):
    """forward_tokens only bounds memory: many small passes train exactly like one big one."""
    runs = []
    for budget in (4096, 40):  # 40 tokens: about one sequence per forward pass
        cfg = make_config(algo, tiny_model_dir, tmp_path, steps=2, forward_tokens=budget)
        runs.append([m.metrics for m in run_all(rated, cfg)])
    for big, small in zip(*runs, strict=True):
        for name in ("loss", "grad_norm", *(k for k in big if "/" in k or k in ("kl", "reward"))):
            assert small[name] == pytest.approx(big[name], rel=1e-3, abs=1e-5), name


def test_small_data_sets_get_enough_steps():
    """Steps from epochs: 2 passes, but at least min_steps while that is at most 8 passes."""
    from types import SimpleNamespace

    from core.training.objective import Objective

    cfg = config_for("dpo", "cpu")
    assert (cfg.epochs, cfg.min_steps, cfg.batch_size) == (2.0, 32, 8)

    def steps(n, **changes):
        obj = SimpleNamespace(examples=[0] * n)
        return Objective.steps_for(obj, dataclasses.replace(cfg, **changes), 1)

    assert steps(150) == 38  # 2 epochs of 150 pairs at batch 8
    assert steps(50) == 32  # 2 epochs would be 13 steps: min_steps, 5 passes
    assert steps(20) == 20  # capped at 8 passes
    assert steps(50, min_steps=0) == 13
    assert steps(50, batch_size=4, grad_accum=2) == 32


# ---- diagnostics --------------------------------------------------------------------------------
class _AlertAtStep:
    """A watcher that raises one alert at ``step`` (the rules are tested in test_diagnostics)."""

    def __init__(self, step):
        self.step = step

    def __call__(self, algo, config):
        from core.training.diagnostics import Alert

        at = self.step

        class Watcher:
            def observe(self, step, metrics):
                return [Alert("kl-blowup", step, f"step {step}: test")] if step == at else []

            def replay(self, steps):
                return []

        return Watcher()


def test_alerts_are_stored_yielded_and_printed(rated, tiny_model_dir, monkeypatch, capsys):
    import main
    from core.training import loop

    monkeypatch.setattr(loop, "Watcher", _AlertAtStep(2))
    steps = run_all(rated, make_config("dpo", tiny_model_dir, steps=3))
    assert [len(m.alerts) for m in steps] == [0, 1, 0]  # alerts never stop a run by default
    assert rated.run(steps[0].run_id)["status"] == "finished"
    assert [(a["step"], a["rule"]) for a in rated.alerts(steps[0].run_id)] == [(2, "kl-blowup")]
    argv = ["--db", str(rated.path), "--device", "cpu", "train", "--algo", "dpo", "--steps", "3"]
    assert main.main([*argv, "--model", str(tiny_model_dir), "--batch-size", "4"]) == 0
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("alert:")] == [
        "alert: [kl-blowup] step 2: test"
    ]


def test_abort_on_alert_stops_with_a_checkpoint_to_resume(rated, tiny_model_dir, monkeypatch):
    from core.training import loop

    monkeypatch.setattr(loop, "Watcher", _AlertAtStep(2))
    cfg = make_config("dpo", tiny_model_dir, steps=5, abort_on_alert=True)
    steps = run_all(rated, cfg)
    run = rated.run(steps[0].run_id)
    assert [m.step for m in steps] == [1, 2] and steps[-1].checkpoint_id is not None
    assert run["status"] == "stopped" and "kl-blowup" in run["message"]
    resumed = run_all(rated, None, resume_run_id=steps[0].run_id)
    assert [m.step for m in resumed] == [3, 4, 5]


def test_per_token_logps_and_held_out_reward_accuracy_are_logged(rated, tiny_model_dir):
    dpo = run_all(rated, make_config("dpo", tiny_model_dir, steps=1))[0].metrics
    assert dpo["logps/chosen_per_token"] > dpo["logps/chosen"]  # a sum of negatives is lower
    # 5 pairs are too few to hold any out
    reward = run_all(rated, make_config("reward", tiny_model_dir, steps=1))[0].metrics
    assert "eval/accuracy" not in reward


def test_a_reward_model_measures_accuracy_on_pairs_it_does_not_train_on(
    project_with_prompts, tiny_model_dir
):
    store = project_with_prompts
    for pid in store.prompt_ids():  # 5 prompts x 4 samples ranked: 30 pairs
        ids = store.add_samples(
            [{"prompt_id": pid, "text": f"answer {k} " * (k + 1), "model": "x"} for k in range(4)]
        )
        store.add_rating(annotator="ann", kind="rank", sample_ids=ids, value={"order": ids})
    steps = run_all(store, make_config("reward", tiny_model_dir, steps=6))
    measured = [m.step for m in steps if "eval/accuracy" in m.metrics]
    assert measured == [5, 6]  # every 5 steps and at the last
    assert all(0 <= m.metrics["eval/accuracy"] <= 1 for m in steps if m.step in measured)
    run = store.run(steps[0].run_id)
    assert len(run["rating_ids"]) == 5 and run["config"]["heldout_fraction"] == 0.1
