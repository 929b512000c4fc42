"""Helpers the exchange tests share: checkpoints as training leaves them, and the GGUF checks.

GGUF agreement is teacher-forced: both models read the original's own greedy continuation and we
count the positions where their next-token argmax is the same. Comparing two free generations
instead would count every token after the first divergence as a miss, measuring where the first
near-tie flips rather than how often the models agree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from core.exchange.gguf import export_gguf

PROMPTS = [
    "Write a short poem about the sea.",
    "What is the capital of France?",
    "def add(a, b): return a + b",
    "Explain gravity in one sentence, with 2 examples.",
    "你好！ How are   you today?",
]
NEW_TOKENS = 32
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def save_checkpoint(
    store, tmp_path, base_dir, *, adapter=False, kind="policy", drop=(), lora=("q_proj", "v_proj")
):
    """What a training run on ``base_dir`` leaves: a folder, a run row, metrics rows and a
    checkpoint row."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_dir)
    folder = tmp_path / "checkpoints" / f"{kind}-{'adapter' if adapter else 'full'}"
    torch.manual_seed(1)
    if kind == "reward":
        from transformers import AutoConfig, AutoModelForSequenceClassification

        config = AutoConfig.from_pretrained(base_dir, num_labels=1)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(base_dir)
    if adapter:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=4, lora_alpha=8, target_modules=list(lora), init_lora_weights=False)
        model = get_peft_model(model, config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    config = {"algo": "dpo", "lr": 3e-05, "beta": 0.1, "lora": adapter, "batch_size": 8}
    (folder / "run_config.json").write_text(json.dumps(config))
    (folder / "optimizer.safetensors").write_bytes(b"state for resuming")
    (folder / "reference_logps.safetensors").write_bytes(b"reference log-probs for resuming")
    (folder / "checkpoint.json").write_text("{}")
    for name in drop:
        (folder / name).unlink()
    rating_ids = [r[0] for r in store.conn.execute("SELECT id FROM ratings")]
    run_id = store.create_run("dpo", config, str(base_dir), rating_ids)
    store.log_metrics(run_id, 10, {"loss": 0.42, "rewards/accuracies": 0.75})
    from core.checkpoints import sha256_file, weights_file

    return store.add_checkpoint(
        run_id=run_id,
        step=10,
        kind=kind,
        path=str(folder),
        sha256=sha256_file(weights_file(folder)),
        base_model=str(base_dir),
        adapter=adapter,
        metrics={"loss": 0.42},
    )


def generates_a_token(model, folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok("The sea", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=1, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 1


def sharp_llama(
    folder: Path, tokenizer_dir: Path, *, tied: bool = True, seed: int = 0, **overrides: object
) -> Path:
    """A random 2-layer Llama (hidden 64, 4 query heads sharing 2 KV heads) with the tokenizer of
    ``tokenizer_dir`` and 16 embedding rows more than tokens, as many checkpoints pad them.

    The init scale is 0.12, not the usual 0.02: at 0.02 attention is so flat that even a file with
    wrong Q/K rows agrees with the original on every position, so the check could not fail. Larger
    scales make rounding flip more near-tie argmaxes (q8_0 most), so this is the middle ground.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, folder / name)
    tok = AutoTokenizer.from_pretrained(folder)
    config = LlamaConfig(
        vocab_size=len(tok) + 16,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        initializer_range=0.12,
        tie_word_embeddings=tied,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **overrides,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def load_original(folder: Path):
    """Model and tokenizer from the Hugging Face folder, in float32 as the export reads them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)


def load_gguf(path: Path, **kwargs: object):
    """Model and tokenizer from the GGUF file alone (its folder holds no other model files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32, **kwargs
    )
    return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def chat_ids(tokenizer, prompt: str) -> list[int]:
    messages = [{"role": "user", "content": prompt}]
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"])


def greedy(reference, ids: list[int]) -> list[int]:
    """The reference's greedy continuation of ``ids``, all NEW_TOKENS of it (even past a stop)."""
    with torch.no_grad():
        full = reference.generate(
            torch.tensor([ids]),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            do_sample=False,
            pad_token_id=reference.config.eos_token_id,
        )
    return full[0, len(ids) :].tolist()


def teacher_forced_agreement(
    reference, exported, prompt_ids: list[list[int]]
) -> tuple[float, float]:
    """Share of positions where both models pick the same next token along the reference's greedy
    continuation, and the largest logit difference relative to the reference's largest logit."""
    same = total = 0
    worst = 0.0
    with torch.no_grad():
        for ids in prompt_ids:
            full = torch.tensor([ids + greedy(reference, ids)])
            n = len(ids)
            ref_logits = reference(full).logits[
                0, n - 1 : -1
            ]  # (32, V): the new tokens' predictions
            exp_logits = exported(full).logits[0, n - 1 : -1]
            same += int((ref_logits.argmax(-1) == exp_logits.argmax(-1)).sum())
            total += ref_logits.shape[0]
            error = (ref_logits - exp_logits).abs().max() / ref_logits.abs().max()
            worst = max(worst, float(error))
    return same / total, worst


def llama_cpp_agreement(path: Path, reference, prompt_ids: list[list[int]]) -> tuple[float, int]:
    """The same teacher-forced agreement, with llama.cpp itself (the xllamacpp bindings) running
    the GGUF file: its greedy next token after each prefix of the reference's continuation.
    Returns the share and the positions compared (a token that ends mid-character is not
    reported by llama.cpp's server, so it is left out)."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = 256
    params.n_parallel = 1
    params.warmup = False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    same = total = 0
    for ids in prompt_ids:
        continuation = greedy(reference, ids)
        for k, want in enumerate(continuation):
            request = {
                "prompt": ids + continuation[:k],
                "n_predict": 1,
                "ignore_eos": True,
                "cache_prompt": True,  # each prefix adds one token to the last
                "samplers": ["top_k"],
                "top_k": 1,
                "n_probs": 1,
            }
            reply = server.handle_completions(request)
            reply = json.loads(reply) if isinstance(reply, str) else reply
            logprobs = reply["choices"][0]["logprobs"]
            if logprobs is None:
                continue
            same += logprobs["content"][0]["id"] == want
            total += 1
    return same / max(total, 1), total


def export_to(folder: Path, out_dir: Path, quant: str) -> Path:
    """Export ``folder`` into a folder of its own (so a GGUF loader sees no other model files)."""
    result = export_gguf(folder, out_dir / f"model-{quant}.gguf", quant)
    assert not result.cancelled and result.path.is_file()
    return result.path
