"""Model specs → a loaded (model, tokenizer, device, dtype); checkpoints of the project included.

A checkpoint that is a LoRA adapter loads its base model first (itself a spec, possibly another
checkpoint), so the recursion stays inside this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.checkpoints import verify
from core.errors import ModelLoadError
from core.models import precision
from core.models.default import default_model_dir, load_gguf
from core.models.specs import ModelSpec, Progress, parse_dtype, parse_spec, pick_device
from core.models.tokens import TOKENIZER_LOCK, load_tokenizer, prepare_tokenizer
from core.quiet_imports import collector_paused, quiet_import

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    spec: str  # what samples record as their `model`
    checkpoint_id: int | None = None
    source: str = ""  # the folder or file the weights came from
    info: dict[str, Any] = field(default_factory=dict)
    precision: str = "asked"  # where the dtype came from: asked, default, cache or measured

    @property
    def device_label(self) -> str:
        """``cpu (bfloat16, measured)``: the device, the dtype, and whether this CPU's speed
        chose it (the status bar and the CLI show it)."""
        how = ", measured" if self.precision in ("cache", "measured") else ""
        return f"{self.device.type} ({str(self.dtype).replace('torch.', '')}{how})"


def load_model(
    spec: str = "default",
    *,
    store: Any = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    progress: Progress | None = None,
) -> LoadedModel:
    """Load a causal LM for generation or training. Raises ModelLoadError with a clear message.

    ``dtype`` None or ``auto``: bf16 on CUDA that has it, fp16 on MPS, and on a CPU the precision
    measured to generate faster on this CPU (core.models.precision: read in that dtype once it
    is cached, else loaded in fp32, measured and cast)."""
    parsed = parse_spec(spec)
    dev = pick_device(device)
    dt = parse_dtype(dtype, dev)
    how = "asked" if dtype and dtype != "auto" else "default"
    checkpoint_id = None
    if parsed.kind == "checkpoint":
        if store is None:
            raise ModelLoadError(f"{spec}: checkpoints need an open project (--db).")
        rec = store.checkpoint(parsed.value)
        if rec["kind"] != "policy":
            raise ModelLoadError(
                f"checkpoint:{rec['id']} is a {rec['kind']} model, not a generator; choose a "
                "policy checkpoint (checkpoint:latest is the newest one)."
            )
        if progress:
            progress(f"Loading checkpoint:{rec['id']}…", 0.1)
        model, tokenizer = load_checkpoint_model(rec, store=store, dtype=dt, progress=progress)
        checkpoint_id = rec["id"]
        source, spec_text = rec["path"], f"checkpoint:{rec['id']}"
    else:
        if progress:
            progress(f"Loading model {parsed.text}…", 0.0)
        measured = how == "default" and dev.type == "cpu"
        known = _cached_cpu_dtype if measured else None
        model, tokenizer, source = _load_plain(parsed, dt, trust_remote_code, progress, known)
        spec_text = parsed.text
    model.to(dev)
    model.eval()
    prepare_tokenizer(tokenizer, model)
    if how == "default" and dev.type == "cpu":
        dt, how = precision.cpu_dtype(model, tokenizer, progress)
        cast_weights(model, dt)
    if progress:
        progress(f"Model {spec_text} ready on {dev.type} ({DTYPE_NAMES[dt]}).", 1.0)
    loaded = LoadedModel(model, tokenizer, dev, dt, spec_text, checkpoint_id, str(source))
    loaded.precision = how
    return loaded


def cast_weights(model: Any, dtype: torch.dtype) -> None:
    """Cast ``model``'s float parameters to ``dtype`` as loading in it would: buffers (rotary
    frequencies) and the modules the model keeps in fp32 stay as they are."""
    keep = tuple(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, param in model.named_parameters():
        if param.is_floating_point() and not any(k in name.split(".") for k in keep):
            param.data = param.data.to(dtype)


def _cached_cpu_dtype(config: Any) -> torch.dtype | None:
    known = precision.cpu_dtype(config, None, measure=False)
    return None if known is None else known[0]


def _load_plain(
    parsed: ModelSpec,
    dtype: torch.dtype,
    trust_remote_code: bool,
    progress: Progress | None,
    known: Callable[[Any], torch.dtype | None] | None = None,
) -> tuple[Any, Any, str]:
    if parsed.kind == "gguf":
        path = Path(parsed.value)
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist; give the path of a .gguf model file.")
        model, tokenizer = load_gguf(path, dtype)
        return model, tokenizer, str(path)
    if parsed.kind == "default":
        folder = default_model_dir(progress)
        model, tokenizer = load_pretrained_folder(str(folder), dtype, False, "default", known)
        return model, tokenizer, str(folder)
    if parsed.kind == "folder":
        path = Path(parsed.value)
        if not path.exists():
            raise ModelLoadError(
                f"{path} does not exist; give a Hugging Face model folder, a .gguf file, a hub "
                "id, `default`, or checkpoint:ID."
            )
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is not a Hugging Face model folder (no config.json); expected a causal "
                "language model saved with save_pretrained."
            )
    return *load_pretrained_folder(
        parsed.value, dtype, trust_remote_code, parsed.value, known
    ), parsed.value


def load_pretrained_folder(
    name: str,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    label: str | None = None,
    known: Callable[[Any], torch.dtype | None] | None = None,
) -> tuple[Any, Any]:
    """AutoModelForCausalLM + AutoTokenizer from a folder or hub id, with errors for people.

    ``known(config)``: the dtype this CPU already chose for the architecture, if any; the
    weights are then read in it (no full-precision copy to cast afterwards)."""
    quiet_import("transformers", "transformers.models.auto.modeling_auto")
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING,
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    )

    label = label or name
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise ModelLoadError(
            f"model {label!r} could not be found locally or downloaded ({e}). Give a local "
            "model folder, a .gguf file, `default`, or check the hub id and network."
        ) from e
    except ValueError as e:
        raise ModelLoadError(f"model {label!r} has an unreadable config.json ({e}).") from e
    archs = getattr(config, "architectures", None) or []
    generative = ("CausalLM", "LMHeadModel", "ForConditionalGeneration")
    not_causal = archs and not any(g in a for a in archs for g in generative)
    if (
        config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not_causal
    ) and not trust_remote_code:
        raise ModelLoadError(
            f"model {label!r} is a {config.model_type!r} model ({', '.join(archs) or 'no architecture'}), "
            "not a causal language model; "
            "expected a text-generation model such as Llama, Qwen2, GPT-2 or SmolLM."
        )
    # the model's code and the tokenizer's, imported without collector pauses (core.quiet_imports);
    # the model itself is built afterwards, with the collector running
    quiet_import("transformers.tokenization_utils_tokenizers", optional=True)
    with collector_paused():
        try:
            MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]  # lazy in transformers: imports the module
        except (KeyError, ImportError, AttributeError):
            pass  # remote code, or a model transformers cannot import: from_pretrained says why
    if known is not None:
        dtype = known(config) or dtype
    try:
        tokenizer = load_tokenizer(name, trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=dtype, trust_remote_code=trust_remote_code
        )
    except Exception as e:  # noqa: BLE001 - corrupt weights surface as many exception types
        raise ModelLoadError(
            f"model {label!r} could not be loaded ({type(e).__name__}: {e}). The weights or "
            "tokenizer files may be corrupt or incomplete; re-download or re-export them."
        ) from e
    return model, tokenizer


def load_checkpoint_model(
    rec: dict[str, Any],
    *,
    store: Any,
    dtype: torch.dtype,
    progress: Progress | None = None,
) -> tuple[Any, Any]:
    """(causal LM, tokenizer) of a policy checkpoint, ready to generate (adapters merged)."""
    folder = verify(store, rec)
    if not rec["adapter"]:
        return load_pretrained_folder(str(folder), dtype, False, f"checkpoint:{rec['id']}")
    quiet_import("peft")
    from peft import PeftModel

    if progress:
        progress(f"Loading base model {rec['base_model']} for checkpoint:{rec['id']}…", 0.2)
    base = load_model(rec["base_model"], store=store, device="cpu", dtype=DTYPE_NAMES[dtype])
    model = PeftModel.from_pretrained(base.model, str(folder)).merge_and_unload()
    return model, load_tokenizer(str(folder))


def save_model_files(model: Any, tokenizer: Any, folder: Path) -> None:
    """``save_pretrained`` of the model (a peft model saves its adapter) and of its tokenizer."""
    model.save_pretrained(folder)
    with TOKENIZER_LOCK:  # it may be shared with a thread that is tokenizing
        tokenizer.save_pretrained(folder)
