"""GGUF export: the file loads back in transformers and predicts what the original predicts.

A random Llama with 4 query heads sharing 2 KV heads (so GQA is exercised) and the project's tiny
byte-level BPE tokenizer is exported, loaded from the GGUF alone, and compared with the original
(exchange_checks.teacher_forced_agreement says how and why). The slow tests do the same with the
embedded default model, SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import threading
import time

import gguf
import numpy as np
import pytest
import torch
from exchange_checks import (
    PROMPTS,
    chat_ids,
    export_to,
    llama_cpp_agreement,
    load_gguf,
    load_original,
    sharp_llama,
    teacher_forced_agreement,
)

from core.errors import UserError
from core.exchange import ExportError
from core.exchange import gguf as gguf_export
from core.exchange.gguf import (
    GGUFExportError,
    export_gguf,
    iter_export_gguf,
    permute_for_ggml_rope,
)


@pytest.fixture(scope="session")
def llama(tmp_path_factory, tiny_model_dir):
    return sharp_llama(tmp_path_factory.mktemp("sharp-llama"), tiny_model_dir)


def agreement_with(folder, path, prompts=PROMPTS, **load) -> tuple[float, float]:
    reference, ref_tok = load_original(folder)
    exported, _ = load_gguf(path, **load)
    return teacher_forced_agreement(reference, exported, [chat_ids(ref_tok, p) for p in prompts])


# ---- round trip through transformers ------------------------------------------------------------
@pytest.mark.parametrize(
    ("quant", "min_agreement", "max_logit_error"), [("f16", 0.98, 0.01), ("q8_0", 0.95, 0.05)]
)
def test_export_round_trips_through_transformers(
    llama, tmp_path, quant, min_agreement, max_logit_error
):
    path = export_to(llama, tmp_path, quant)
    reference, ref_tok = load_original(llama)
    exported, gguf_tok = load_gguf(path)

    prompt_ids = [chat_ids(ref_tok, p) for p in PROMPTS]
    assert [chat_ids(gguf_tok, p) for p in PROMPTS] == prompt_ids
    assert gguf_tok.decode(prompt_ids[4]) == ref_tok.decode(prompt_ids[4])
    agreement, logit_error = teacher_forced_agreement(reference, exported, prompt_ids)
    print(f"\n{quant}: agreement {agreement:.1%}, max logit error {logit_error:.2%}")
    assert agreement >= min_agreement
    # the argmax alone can miss a wrong layout on a random model; the logits cannot
    assert logit_error <= max_logit_error


def test_q4_0_loads_and_gives_finite_logits(llama, tmp_path):
    path = export_to(llama, tmp_path, "q4_0")
    exported, gguf_tok = load_gguf(path)
    with torch.no_grad():
        logits = exported(torch.tensor([chat_ids(gguf_tok, PROMPTS[0])])).logits
    assert torch.isfinite(logits).all()
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0


def test_without_the_qk_permutation_the_check_fails(llama, tmp_path, monkeypatch):
    """The round-trip test can fail: exporting Q/K rows in HF's order breaks agreement and logits."""
    monkeypatch.setattr(gguf_export, "permute_for_ggml_rope", lambda rows, n_heads: rows)
    agreement, logit_error = agreement_with(llama, export_to(llama, tmp_path, "f16"))
    print(f"\nno permutation: agreement {agreement:.1%}, max logit error {logit_error:.2%}")
    assert agreement < 0.98 and logit_error > 0.01


def test_untied_output_is_written_and_used(tmp_path, tiny_model_dir):
    folder = sharp_llama(tmp_path / "untied", tiny_model_dir, tied=False, seed=1)
    path = export_to(folder, tmp_path / "out", "f16")
    assert "output.weight" in {t.name for t in gguf.GGUFReader(path).tensors}
    assert load_gguf(path)[0].config.tie_word_embeddings is False
    agreement, logit_error = agreement_with(folder, path, PROMPTS[:1])
    assert agreement >= 0.98 and logit_error <= 0.01


def test_attention_biases_are_permuted_like_their_weights(tmp_path, tiny_model_dir):
    """Some Llama-family checkpoints have Q/K/V/O biases; Q and K biases need the same row order."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    folder = sharp_llama(tmp_path / "biased", tiny_model_dir, attention_bias=True)
    weights = load_file(folder / "model.safetensors")
    for name in weights:  # the init zeroes biases, which would hide a wrong order
        if name.endswith("_proj.bias"):
            weights[name] = torch.randn(weights[name].shape) * 0.5
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    path = export_to(folder, tmp_path / "out", "f16")
    assert "blk.1.attn_k.bias" in {t.name for t in gguf.GGUFReader(path).tensors}
    # transformers' GGUF config reader does not infer attention_bias, so give it the config
    config = AutoConfig.from_pretrained(folder)
    agreement, logit_error = agreement_with(folder, path, PROMPTS[:2], config=config)
    assert agreement >= 0.98 and logit_error <= 0.01


def test_llama_cpp_itself_predicts_what_the_original_predicts(llama, tmp_path, monkeypatch):
    """llama.cpp, not only transformers' reader: the f16 file run by llama.cpp picks the
    original's next token, and the same file without the Q/K reordering does not."""
    pytest.importorskip("xllamacpp")
    reference, ref_tok = load_original(llama)
    prompt_ids = [chat_ids(ref_tok, p) for p in PROMPTS]
    agreement, n = llama_cpp_agreement(
        export_to(llama, tmp_path / "ok", "f16"), reference, prompt_ids
    )
    print(f"\nllama.cpp f16: agreement {agreement:.1%} over {n} positions")
    assert agreement >= 0.98 and n >= 100
    monkeypatch.setattr(gguf_export, "permute_for_ggml_rope", lambda rows, n_heads: rows)
    wrong = export_to(llama, tmp_path / "wrong", "f16")
    agreement, n = llama_cpp_agreement(wrong, reference, prompt_ids)
    print(f"llama.cpp f16, Q/K rows not reordered: agreement {agreement:.1%} over {n} positions")
    assert agreement < 0.98


# ---- what llama.cpp reads -------------------------------------------------------------------------
def test_metadata_and_tensors_are_what_llama_cpp_reads(llama, tmp_path):
    from safetensors.torch import load_file

    path = export_to(llama, tmp_path, "q8_0")
    reader = gguf.GGUFReader(path)
    f = {name: field.contents() for name, field in reader.fields.items()}
    assert f["general.architecture"] == "llama"
    assert f["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert (f["llama.embedding_length"], f["llama.block_count"]) == (64, 2)
    assert f["llama.feed_forward_length"] == 128
    assert (f["llama.attention.head_count"], f["llama.attention.head_count_kv"]) == (4, 2)
    assert f["llama.rope.dimension_count"] == 16 and f["llama.context_length"] == 256
    assert f["llama.rope.freq_base"] == pytest.approx(10000.0)
    assert f["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)
    assert (f["tokenizer.ggml.model"], f["tokenizer.ggml.pre"]) == ("gpt2", "gpt-2")
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == f["llama.vocab_size"]
    assert tokens[1] == "<|im_start|>" and types[1] == gguf.TokenType.CONTROL
    assert tokens[-1].startswith("[PAD") and types[-1] == gguf.TokenType.UNUSED
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert f["tokenizer.chat_template"] == (llama / "chat_template.jinja").read_text()

    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    assert tensors["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.1.ffn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.1.attn_v.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    # K has the KV head count: its rows are reordered per KV head, not per query head
    weights = load_file(llama / "model.safetensors")
    original_k = weights["model.layers.0.self_attn.k_proj.weight"].numpy()
    stored_k = gguf.dequantize(tensors["blk.0.attn_k.weight"].data, gguf.GGMLQuantizationType.Q8_0)
    np.testing.assert_allclose(stored_k, permute_for_ggml_rope(original_k, 2), atol=0.01)
    assert not np.allclose(stored_k, permute_for_ggml_rope(original_k, 4), atol=0.01)


def test_permuted_rows_make_ggml_rope_equal_hf_rope():
    """Why the permutation: GGML's llama rope on reordered rows gives HF's rope, reordered alike,
    so attention scores (q . k) are unchanged. GGML's rope is written out here from its definition."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    heads, head_dim, hidden, base, pos = 3, 8, 12, 10000.0, 5
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(heads * head_dim, hidden, generator=gen)
    x = torch.randn(hidden, generator=gen)
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.cat([pos * inv_freq, pos * inv_freq])  # HF: the same angle for i and i + d/2
    q = (weight @ x).view(1, heads, 1, head_dim)
    hf, _ = apply_rotary_pos_emb(q, q, angles.cos()[None, None], angles.sin()[None, None])

    def ggml_rope(v: torch.Tensor) -> torch.Tensor:
        pairs = v.view(heads, head_dim // 2, 2)  # GGML: rotates (2i, 2i+1) by pos * inv_freq[i]
        cos, sin = (pos * inv_freq).cos(), (pos * inv_freq).sin()
        a, b = pairs[..., 0], pairs[..., 1]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], -1).reshape(-1)

    permuted = torch.from_numpy(permute_for_ggml_rope(weight.numpy(), heads))
    expected = torch.from_numpy(permute_for_ggml_rope(hf.reshape(-1, 1).numpy(), heads)).reshape(-1)
    torch.testing.assert_close(ggml_rope(permuted @ x), expected)
    assert not torch.allclose(ggml_rope(weight @ x), hf.reshape(-1), atol=1e-3)


# ---- errors, cancel, progress ------------------------------------------------------------------
def test_unsupported_architecture_is_refused_and_leaves_no_file(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)
    GPT2LMHeadModel(config).save_pretrained(folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(GGUFExportError, match=r"GPT2LMHeadModel.*LlamaForCausalLM") as error:
        export_gguf(folder, out_dir / "model.gguf", "f16")
    assert isinstance(error.value, ExportError) and isinstance(error.value, UserError)
    assert list(out_dir.iterdir()) == []


def test_bad_quant_or_output_is_refused_before_any_work(llama, tmp_path):
    with pytest.raises(GGUFExportError, match="q5_k.*f16, q8_0, q4_0"):
        export_gguf(llama, tmp_path / "m.gguf", "q5_k")
    with pytest.raises(ExportError, match="is a folder"):
        export_gguf(tmp_path / "no such folder", tmp_path, "f16")  # the output is checked first
    (tmp_path / "file").write_text("")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export_gguf(llama, tmp_path / "file" / "m.gguf", "f16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_cancel_keeps_the_old_file_and_leaves_no_temp(llama, tmp_path):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"previous export")
    cancel = threading.Event()
    result = export_gguf(llama, target, "q8_0", progress=lambda p: cancel.set(), cancel=cancel)
    assert result.cancelled and result.size_bytes == 0
    assert target.read_bytes() == b"previous export"
    gen = iter_export_gguf(llama, target, "q8_0")
    next(gen), next(gen)
    gen.close()  # what the GUI worker does on cancel
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_failure_midway_keeps_the_old_file(llama, tmp_path, monkeypatch):
    target = tmp_path / "model.gguf"
    target.write_bytes(b"previous export")

    def broken(t, sources):
        raise OSError("disk full")

    monkeypatch.setattr(gguf_export, "_convert", broken)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(llama, target, "f16")
    assert target.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.gguf"]


def test_progress_reports_every_tensor(llama, tmp_path):
    seen = []
    result = export_gguf(llama, tmp_path / "m.gguf", "f16", progress=seen.append)
    per_tensor = seen[1:]  # the first report is the tokenizer step
    assert seen[0].total == 0
    assert [p.done for p in per_tensor] == list(range(1, result.tensors + 1))
    assert {p.total for p in per_tensor} == {result.tensors}
    assert result.tensors == sum(result.tensor_types.values())
    assert per_tensor[-1].text == "output_norm.weight (F32)"
    assert result.size_bytes == (tmp_path / "m.gguf").stat().st_size


# ---- the embedded default model -----------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("quant", "min_agreement"), [("f16", 0.98), ("q8_0", 0.95)])
def test_default_model_export_agrees(tmp_path, quant, min_agreement):
    from core.models import default_model_dir

    folder = default_model_dir()
    start = time.perf_counter()
    path = export_to(folder, tmp_path, quant)
    seconds = time.perf_counter() - start
    reference, ref_tok = load_original(folder)
    exported, gguf_tok = load_gguf(path)
    prompt_ids = [chat_ids(ref_tok, p) for p in PROMPTS]
    assert [chat_ids(gguf_tok, p) for p in PROMPTS] == prompt_ids
    agreement, logit_error = teacher_forced_agreement(reference, exported, prompt_ids)
    size = path.stat().st_size / 2**20
    print(
        f"\ndefault model {quant}: export {seconds:.1f} s, {size:.1f} MiB, agreement "
        f"{agreement:.1%}, max logit error {logit_error:.2%}"
    )
    assert agreement >= min_agreement


@pytest.mark.slow
def test_llama_cpp_runs_the_default_model_export(tmp_path):
    pytest.importorskip("xllamacpp")
    from core.models import default_model_dir

    folder = default_model_dir()
    reference, ref_tok = load_original(folder)
    prompt_ids = [chat_ids(ref_tok, p) for p in PROMPTS]
    agreement, n = llama_cpp_agreement(export_to(folder, tmp_path, "f16"), reference, prompt_ids)
    print(f"\nllama.cpp, default model f16: agreement {agreement:.1%} over {n} positions")
    assert agreement >= 0.98 and n >= 100
