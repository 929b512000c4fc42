"""Models: a spec in, a (model, tokenizer, device, dtype) out; tokens, batches and the reward head.

- ``specs``: what a user types (``default``, a folder, a ``.gguf`` file, a hub id,
  ``checkpoint:ID``), the device and the precision.
- ``precision`` (+ ``calibration``): which dtype a model runs in on a CPU, measured once per CPU,
  torch version and model shape and cached in the data dir.
- ``default``: the embedded SmolLM2-135M-Instruct, converted once from its GGUF file.
- ``tokens``: tokenizers parsed once and shared; every encode and decode holds one lock.
- ``loading``: ``load_model(spec)``, checkpoints of the project included (an adapter's base model
  is itself a spec, so the recursion stays in that module).
- ``batching``: token sequences, length-bucketed batches, log-probs of completion tokens only.
- ``reward``: the scalar-head reward model, its loading from a checkpoint and its scoring.
"""

from core.errors import ModelLoadError
from core.models.default import DEFAULT_MODEL_NAME, default_model_dir, embedded_gguf
from core.models.loading import (
    LoadedModel,
    cast_weights,
    load_model,
    load_pretrained_folder,
    save_model_files,
)
from core.models.specs import (
    ModelSpec,
    Progress,
    default_dtype,
    parse_dtype,
    parse_spec,
    pick_device,
)
from core.models.tokens import (
    TOKENIZER_LOCK,
    detokenize,
    format_prompt,
    load_tokenizer,
    tokenize,
)

__all__ = [
    "DEFAULT_MODEL_NAME",
    "TOKENIZER_LOCK",
    "LoadedModel",
    "ModelLoadError",
    "ModelSpec",
    "Progress",
    "cast_weights",
    "default_dtype",
    "default_model_dir",
    "detokenize",
    "embedded_gguf",
    "format_prompt",
    "load_model",
    "load_pretrained_folder",
    "load_tokenizer",
    "parse_dtype",
    "parse_spec",
    "pick_device",
    "save_model_files",
    "tokenize",
]
