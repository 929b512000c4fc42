"""Batched K-candidate generation writes samples with model, params, seed and token counts."""

import json
import threading

from core.generation import GenerationParams, generate_samples, pick_prompts
from core.models import load_model


def _run(store, lm, **kw):
    params = GenerationParams(
        per_prompt=kw.pop("k", 3),
        max_new_tokens=6,
        seed=kw.pop("seed", 7),
        batch_size=kw.pop("batch_size", 6),
    )
    return list(generate_samples(store, lm, params, **kw))


def test_k_samples_per_prompt_with_params_recorded(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    progress = _run(store, lm, limit=4)
    assert progress[-1].done == progress[-1].total == 4
    assert len(progress) == 2  # 2 prompts (6 sequences) per batch
    rows = list(store.db.query("SELECT * FROM samples"))
    assert len(rows) == 12
    per_prompt = {}
    for r in rows:
        per_prompt[r["prompt_id"]] = per_prompt.get(r["prompt_id"], 0) + 1
        params = json.loads(r["params"])
        assert params["per_prompt"] == 3 and params["max_new_tokens"] == 6
        assert params["seed"] in (7, 9) and params["temperature"] == 0.8
        assert r["model"] == str(tiny_model_dir) and r["uuid"]
        assert 0 <= r["n_tokens"] <= 6
    assert set(per_prompt.values()) == {3}


def test_fair_prompt_choice_covers_the_set(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    _run(store, lm, limit=2, k=2)
    first = {r["prompt_id"] for r in store.db.query("SELECT prompt_id FROM samples")}
    assert pick_prompts(store, 3)[:3] == [p for p in [1, 2, 3, 4, 5] if p not in first][:3]
    _run(store, lm, limit=3, k=2)
    counts = [
        r[0]
        for r in store.conn.execute(
            "SELECT COUNT(s.id) FROM prompts p LEFT JOIN samples s ON s.prompt_id = p.id GROUP BY p.id"
        )
    ]
    assert counts == [2, 2, 2, 2, 2]


def test_same_seed_same_samples(project_with_prompts, tiny_model_dir, tmp_path):
    from core.store import ProjectStore

    lm = load_model(str(tiny_model_dir), device="cpu")
    _run(project_with_prompts, lm, prompt_ids=[1], seed=123)
    ProjectStore(tmp_path / "other.db").close()
    first = [r["text"] for r in project_with_prompts.db.query("SELECT text FROM samples")]
    _run(project_with_prompts, lm, prompt_ids=[1], seed=123)
    both = [r["text"] for r in project_with_prompts.db.query("SELECT text FROM samples")]
    assert both[3:] == first


def test_cancel_leaves_whole_batches_only(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    cancel = threading.Event()
    params = GenerationParams(per_prompt=2, max_new_tokens=4, seed=1, batch_size=2)
    seen = []
    for prog in generate_samples(store, lm, params, cancel=cancel):
        seen.append(prog)
        cancel.set()
    assert len(seen) == 1
    assert store.count("samples") == 2  # one whole prompt, nothing half-written


def test_greedy_is_deterministic(project_with_prompts, tiny_model_dir):
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    params = GenerationParams(per_prompt=2, max_new_tokens=5, temperature=0)
    list(generate_samples(store, lm, params, prompt_ids=[2]))
    a, b = [r["text"] for r in store.db.query("SELECT text FROM samples")]
    assert a == b


class _CancelAfter(threading.Event):
    """A cancel flag that turns on at its ``n``-th check: a user pressing Stop mid-batch."""

    def __init__(self, n: int):
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n or super().is_set()


def test_cancel_stops_inside_a_batch(project_with_prompts, tiny_model_dir):
    """Stop takes effect within a decoding step, on both the lean path and model.generate's."""
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    params = GenerationParams(per_prompt=2, max_new_tokens=40, temperature=0, batch_size=8)
    for lean in (True, False):
        # a repetition penalty needs model.generate's logits processors: the general path
        lm.model.generation_config.repetition_penalty = 1.0 if lean else 1.3
        cancel = _CancelAfter(4)
        assert list(generate_samples(store, lm, params, cancel=cancel)) == []
        assert store.count("samples") == 0  # the interrupted batch is dropped whole
        assert cancel.checks < 10  # stopped after a few tokens, not after 40 per row
    lm.model.generation_config.repetition_penalty = 1.0


def test_whole_distribution_sampling_follows_the_temperature_softmax(tiny_model_dir):
    """Online RL samples with top_k=0, top_p=1: the tokens must follow softmax(logits / T), the
    distribution its log-probs are computed from. The mean log-prob of sampled tokens estimates
    minus the entropy; truncated (top-k) sampling would sit well above it."""
    import torch

    from core.generation import sample_continuations

    lm = load_model(str(tiny_model_dir), device="cpu")
    enc = lm.tokenizer(["Say hello."], return_tensors="pt", add_special_tokens=False)
    temperature, n = 0.8, 4000
    with torch.no_grad():
        logits = lm.model(**enc).logits[0, -1].float()
    logp = (logits / temperature).log_softmax(-1)
    neg_entropy = float((logp.exp() * logp).sum())

    def mean_and_se(top_k: int) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            rows = sample_continuations(
                lm.model,
                enc["input_ids"],
                enc["attention_mask"],
                k=n,
                max_new_tokens=1,
                temperature=temperature,
                top_k=top_k,
                top_p=1.0,
                stop_ids=set(),
                pad_id=0,
                generator=gen,
            )
        picked = logp[torch.tensor([r[0] for r in rows])]
        return float(picked.mean()), float(picked.std() / n**0.5)

    mean, se = mean_and_se(0)
    assert abs(mean - neg_entropy) < 4 * se
    truncated, se_t = mean_and_se(5)
    assert truncated - neg_entropy > 4 * se_t  # the check tells the two apart


def test_the_prefill_keeps_one_position_contiguous_and_the_text_unchanged(tiny_model_dir):
    """The prefill asks for the last position's logits by index (a contiguous LM-head input,
    fast on a CPU); the sampled tokens equal those of the old ``logits_to_keep=1`` and of
    computing every position's logits."""
    import torch

    from core.generation import sample_continuations

    lm = load_model(str(tiny_model_dir), device="cpu")
    enc = lm.tokenizer(
        ["Say hello.", "Write a short poem about the sea."],
        return_tensors="pt",
        padding=True,
        add_special_tokens=False,
    )
    head_inputs: list[torch.Tensor] = []
    head = lm.model.lm_head.register_forward_pre_hook(lambda m, a: head_inputs.append(a[0]))

    def run(keep=None, temperature=0.8):
        hook = None
        if keep is not None:  # what the prefill asked for before, or every position

            def force(module, args, kwargs):
                if "logits_to_keep" in kwargs:
                    kwargs["logits_to_keep"] = keep
                return args, kwargs

            hook = lm.model.register_forward_pre_hook(force, with_kwargs=True)
        try:
            with torch.no_grad():
                return sample_continuations(
                    lm.model,
                    enc["input_ids"],
                    enc["attention_mask"],
                    k=3,
                    max_new_tokens=12,
                    temperature=temperature,
                    top_k=50,
                    top_p=0.95,
                    stop_ids=set(),
                    pad_id=0,
                    generator=torch.Generator().manual_seed(5),
                )
        finally:
            if hook is not None:
                hook.remove()

    try:
        now = run()
        prefill_input = head_inputs[0]
        assert prefill_input.shape[1] == 1 and prefill_input.is_contiguous()
        for temperature in (0.8, 0.0):
            assert run(temperature=temperature) == run(1, temperature) == run(0, temperature)
        assert now == run(1)
    finally:
        head.remove()


def test_a_preview_shows_each_batch_as_it_is_written(
    project_with_prompts, tiny_model_dir, monkeypatch
):
    """On both paths the preview grows token by token into the responses that are saved."""
    import core.generation

    monkeypatch.setattr(core.generation, "PREVIEW_EVERY_S", 0.0)
    store = project_with_prompts
    lm = load_model(str(tiny_model_dir), device="cpu")
    params = GenerationParams(
        per_prompt=2, max_new_tokens=12, temperature=1.5, seed=3, batch_size=4
    )
    for lean in (True, False):
        lm.model.generation_config.repetition_penalty = 1.0 if lean else 1.3
        seen = []
        progress = list(generate_samples(store, lm, params, limit=2, preview=seen.append))
        saved = {}
        for sid in progress[-1].sample_ids:
            row = store.db["samples"].get(sid)
            saved.setdefault(row["prompt_id"], []).append(row["text"])
        assert len(seen) >= 5, "a preview after every token of a 12-token batch"
        assert seen[0].prompt_ids == sorted(saved)
        lengths = [sum(len(t.rstrip("\ufffd")) for texts in p.texts for t in texts) for p in seen]
        assert lengths == sorted(lengths) and lengths[-1] > lengths[0]
        for p in seen:
            for pid, texts in zip(p.prompt_ids, p.texts, strict=True):
                assert len(texts) == 2
                for partial, final in zip(texts, saved[pid], strict=True):
                    assert final.startswith(partial.rstrip("\ufffd"))
        store.conn.execute("DELETE FROM samples")
    lm.model.generation_config.repetition_penalty = 1.0
