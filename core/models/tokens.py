"""Tokenizers, shared and locked: every encode and decode in core/ goes through here."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

# Parsing a fast tokenizer holds the GIL long enough to freeze the GUI, so a tokenizer is parsed
# once per content (a hash of its files) and shared in the process. A fast tokenizer sets padding
# and truncation on its shared Rust object per call and encodes with the GIL released, so every
# encode and decode in core/ holds TOKENIZER_LOCK (``tokenize``, ``detokenize``). docs/design.md.
TOKENIZER_LOCK = threading.RLock()
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
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


def prepare_tokenizer(tokenizer: Any, model: Any) -> None:
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
