"""Export a Llama-family Hugging Face model folder to one GGUF file for llama.cpp and its front ends.

The folder's safetensors weights are renamed to llama.cpp's tensor names, the attention Q/K rows
are reordered for GGML's rotary layout, 2-D weights are stored as f16 / q8_0 / q4_0 and 1-D ones as
f32, and the config and tokenizer (core.exchange.gguf_tokenizer) become GGUF metadata. Tensors are
converted and written one at a time, so memory stays near one tensor, into a temp file beside the
output that is fsynced and renamed only when complete: an error or a cancel leaves the old file
(or none), never half of one. Rules and limits: docs/exports.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open

from core.exchange.files import Cancelled, atomic_path, drain, file_target
from core.exchange.gguf_tokenizer import GGUFExportError, read_tokenizer, write_tokenizer

__all__ = [
    "QUANTS",
    "SUPPORTED_ARCHITECTURES",
    "GGUFExportError",
    "GGUFExportResult",
    "GGUFProgress",
    "check_quant",
    "export_gguf",
    "iter_export_gguf",
    "permute_for_ggml_rope",
    "read_config",
]

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
QUANTS = {
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}
_T = gguf.GGMLQuantizationType

# Module path inside HF's model.layers.N -> tensor name inside llama.cpp's blk.N.
_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER_RE = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_REQUIRED_CONFIG = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "max_position_embeddings",
)
_IGNORED = re.compile(r"rotary_emb\.inv_freq$")  # a buffer some older checkpoints saved


@dataclass
class GGUFProgress:
    done: int  # tensors written
    total: int  # tensors to write (0 while the tokenizer is read)
    text: str  # what was just done, e.g. "blk.3.attn_q.weight (Q8_0)"


@dataclass
class GGUFExportResult:
    """What an export wrote (or, when ``cancelled``, would have: no file is left then)."""

    path: Path
    quant: str
    tensors: int
    size_bytes: int
    seconds: float
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type name -> tensor count
    cancelled: bool = False


@dataclass
class _Planned:
    source: str  # name in the safetensors file(s)
    name: str  # llama.cpp tensor name
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    rope_heads: int = 0  # >0: reorder rows for GGML rope, this many heads


def export_gguf(
    model_folder: str | Path,
    output: str | Path,
    quant: str = "f16",
    *,
    name: str | None = None,
    progress: Callable[[GGUFProgress], None] | None = None,
    cancel: threading.Event | None = None,
) -> GGUFExportResult:
    """Write ``model_folder`` (config.json, safetensors, tokenizer files) to the GGUF file ``output``.

    ``quant`` is one of QUANTS; ``name`` is the file's ``general.name`` (default: the folder's
    name). ``progress`` gets a GGUFProgress after each tensor; setting ``cancel`` stops at the next
    tensor and returns a result with ``cancelled=True``. Raises GGUFExportError for a folder it
    cannot export (architecture, tokenizer, missing files), before anything is written.
    """
    gen = iter_export_gguf(model_folder, output, quant, name=name, cancel=cancel)
    return drain(gen, progress)


def iter_export_gguf(
    model_folder: str | Path,
    output: str | Path,
    quant: str = "f16",
    *,
    name: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[GGUFProgress, None, GGUFExportResult]:
    """The export as a generator (for gui/workers.py): yields progress, returns the result.

    Closing it or setting ``cancel`` removes the temp file and leaves ``output`` as it was."""
    start = time.perf_counter()
    target = file_target(output)
    check_quant(quant)
    folder = Path(model_folder)
    config = read_config(folder)
    yield GGUFProgress(0, 0, "reading the tokenizer")
    tokenizer = read_tokenizer(folder, config)
    sources = _safetensors_index(folder)
    plan = _plan_tensors(config, sources, quant)

    writer = gguf.GGUFWriter(path=None, arch="llama")
    _write_model_metadata(writer, config, name or folder.name, quant)
    write_tokenizer(writer, tokenizer)
    for t in plan:
        writer.add_tensor_info(
            t.name, _stored_shape(t), _stored_dtype(t), _stored_nbytes(t), _raw_type(t)
        )
    types = dict(Counter(t.qtype.name for t in plan))
    cancel = cancel or threading.Event()
    try:
        with atomic_path(target) as tmp:
            try:
                writer.write_header_to_file(path=tmp)
                writer.write_kv_data_to_file()
                writer.write_ti_data_to_file()
                for done, t in enumerate(plan, start=1):
                    if cancel.is_set():
                        raise Cancelled
                    writer.write_tensor_data(_convert(t, sources))
                    yield GGUFProgress(done, len(plan), f"{t.name} ({t.qtype.name})")
                writer.flush()
            finally:
                writer.close()
    except Cancelled:
        seconds = time.perf_counter() - start
        return GGUFExportResult(target, quant, len(plan), 0, seconds, types, cancelled=True)
    seconds = time.perf_counter() - start
    return GGUFExportResult(target, quant, len(plan), target.stat().st_size, seconds, types)


def check_quant(quant: str) -> None:
    """A quantization the writer knows (QUANTS), or GGUFExportError listing them."""
    if quant not in QUANTS:
        raise GGUFExportError(
            f"Unknown GGUF quantization {quant!r}; choose one of {', '.join(QUANTS)}."
        )


def permute_for_ggml_rope(rows: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder the output rows of a Q or K projection from HF's rotary layout to GGML's.

    HF's Llama rotates dimension i of each head together with dimension i + head_dim/2 (the two
    halves of the head); GGML's rope for llama rotates adjacent dimensions 2i and 2i+1. So within
    each head, row i goes to 2i and row i + head_dim/2 goes to 2i + 1. Works on weights (rows, cols)
    and biases (rows,); it only moves whole rows, so it commutes with row-wise quantization.
    """
    head_dim = rows.shape[0] // n_heads
    halves = rows.reshape(n_heads, 2, head_dim // 2, *rows.shape[1:])  # (H, 2, D/2, ...)
    return halves.swapaxes(1, 2).reshape(rows.shape)  # (H, D/2, 2, ...): the halves interleaved


def read_config(folder: Path) -> dict[str, Any]:
    """``folder``'s config.json, refused with GGUFExportError naming what the writer does not
    support (architecture, rope scaling, MLP biases, missing keys)."""
    path = folder / "config.json"
    if not path.is_file():
        raise GGUFExportError(f"{folder} has no config.json; pick a Hugging Face model folder.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GGUFExportError(f"{path}: cannot be read as JSON ({exc}).") from exc
    model_type = config.get("model_type", "unknown")
    default = "LlamaForCausalLM" if model_type == "llama" else model_type
    architectures = config.get("architectures") or [default]
    if architectures[0] not in SUPPORTED_ARCHITECTURES:
        raise GGUFExportError(
            f"{path}: GGUF export does not support the {architectures[0]} architecture; "
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (Llama-family models such as SmolLM2)."
        )
    missing = [key for key in _REQUIRED_CONFIG if key not in config]
    if missing:
        raise GGUFExportError(
            f"{path} lacks {', '.join(missing)}; save the model with transformers to write a full config."
        )
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or {}
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type != "default":
        raise GGUFExportError(
            f"{path}: rope type {rope_type!r} is not supported by GGUF export yet; only the default "
            "rope (no scaling) is."
        )
    if config.get("mlp_bias"):
        raise GGUFExportError(
            f"{path}: mlp_bias is true; GGUF export supports Llama MLPs without biases."
        )
    return config


def _head_dim(config: dict[str, Any]) -> int:
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def _write_model_metadata(
    writer: gguf.GGUFWriter, config: dict[str, Any], name: str, quant: str
) -> None:
    """The `general.*` and `llama.*` keys llama.cpp reads to build the graph."""
    n_heads = int(config["num_attention_heads"])
    head_dim = _head_dim(config)
    rope = config.get("rope_parameters") or {}
    writer.add_type("model")
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(n_heads)
    writer.add_head_count_kv(int(config.get("num_key_value_heads") or n_heads))
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-6)))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_rope_dimension_count(head_dim)
    if head_dim * n_heads != int(config["hidden_size"]):
        # llama.cpp assumes hidden_size / heads unless told
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_file_type(QUANTS[quant])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _safetensors_index(folder: Path) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or shards with an index)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: folder / file for name, file in weight_map.items()}
    single = folder / "model.safetensors"
    if not single.is_file():
        raise GGUFExportError(
            f"{folder} has no model.safetensors; GGUF export needs full weights in safetensors "
            "(merge a LoRA adapter and save the model first)."
        )
    with safe_open(single, framework="pt") as f:
        return dict.fromkeys(f.keys(), single)


def _plan_tensors(config: dict[str, Any], sources: dict[str, Path], quant: str) -> list[_Planned]:
    """Every tensor to write, in a fixed order, with its llama.cpp name, shape and storage type."""
    n_heads = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_heads)
    tied = bool(config.get("tie_word_embeddings", False))
    if not tied and "lm_head.weight" not in sources:
        raise GGUFExportError(
            "config.json says tie_word_embeddings is false, but the safetensors have no "
            "lm_head.weight; the folder is incomplete."
        )
    plan: list[_Planned] = []
    unknown: list[str] = []
    for source in sources:
        if _IGNORED.search(source) or (tied and source == "lm_head.weight"):
            # tied: llama.cpp uses token_embd when output.weight is absent
            continue
        if source in _GLOBAL_NAMES:
            name, rope_heads = _GLOBAL_NAMES[source], 0
        elif (m := _LAYER_RE.match(source)) and m.group(2) in _LAYER_NAMES:
            leaf = _LAYER_NAMES[m.group(2)]
            name = f"blk.{m.group(1)}.{leaf}.{m.group(3)}"
            rope_heads = {"attn_q": n_heads, "attn_k": n_kv}.get(leaf, 0)
        else:
            unknown.append(source)
            continue
        with safe_open(sources[source], framework="pt") as f:
            shape = tuple(f.get_slice(source).get_shape())
        plan.append(_Planned(source, name, shape, _storage_type(name, shape, quant), rope_heads))
    if unknown:
        raise GGUFExportError(
            f"The safetensors hold tensors a Llama GGUF has no place for: {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}. Is this a plain LlamaForCausalLM checkpoint?"
        )
    return sorted(plan, key=_llama_cpp_order)


def _llama_cpp_order(t: _Planned) -> tuple[int, int, str]:
    """token_embd, the blocks in index order (blk.10 after blk.9), then output_norm and output.

    llama.cpp finds tensors by name; a fixed order just makes files comparable and easy to read.
    """
    if t.name.startswith("blk."):
        return (1, int(t.name.split(".")[1]), t.name)
    return (0 if t.name.startswith("token_embd") else 2, 0, t.name)


def _storage_type(name: str, shape: tuple[int, ...], quant: str) -> gguf.GGMLQuantizationType:
    """f32 for 1-D tensors; otherwise the requested type, or f16 where rows do not fill whole blocks.

    q4_0 keeps the embedding and output matrices at q8_0, as llama.cpp's quantizer keeps them at
    higher precision: they are the most sensitive tensors, and with tied embeddings one matrix is both.
    """
    if len(shape) < 2:
        return _T.F32
    wanted = {"f16": _T.F16, "q8_0": _T.Q8_0, "q4_0": _T.Q4_0}[quant]
    if wanted == _T.Q4_0 and not name.startswith("blk."):
        wanted = _T.Q8_0
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    return wanted if shape[-1] % block == 0 else _T.F16


def _stored_shape(t: _Planned) -> tuple[int, ...]:
    if t.qtype in (_T.F32, _T.F16):
        return t.shape
    return gguf.quant_shape_to_byte_shape(t.shape, t.qtype)


def _stored_dtype(t: _Planned) -> np.dtype:
    return np.dtype({_T.F32: np.float32, _T.F16: np.float16}.get(t.qtype, np.uint8))


def _stored_nbytes(t: _Planned) -> int:
    return int(np.prod(_stored_shape(t))) * _stored_dtype(t).itemsize


def _raw_type(t: _Planned) -> gguf.GGMLQuantizationType | None:
    return None if t.qtype in (_T.F32, _T.F16) else t.qtype


def _convert(t: _Planned, sources: dict[str, Path]) -> np.ndarray:
    """Load one tensor as float32, reorder Q/K rows for GGML's rope, and store it as planned."""
    with safe_open(sources[t.source], framework="pt") as f:
        values = f.get_tensor(t.source).to(torch.float32).numpy()
    if t.rope_heads:
        values = permute_for_ggml_rope(values, t.rope_heads)
    return np.ascontiguousarray(gguf.quantize(values, t.qtype))
