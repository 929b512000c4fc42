"""The tokenizer half of a GGUF export: a Hugging Face byte-level BPE tokenizer as llama.cpp metadata.

A GGUF file carries no tokenizer.json. llama.cpp (and transformers' GGUF loader) rebuild the
tokenizer from `tokenizer.ggml.*` keys: the token strings, their types, the merges, the special
token ids, and a named pre-tokenizer that selects the text-splitting regex. This module reads
tokenizer.json / tokenizer_config.json / config.json as plain JSON (no transformers import) and
writes those keys. Only byte-level BPE (GPT-2 style, as SmolLM2 and Llama 3 use) is supported;
anything else raises GGUFExportError rather than writing a tokenizer that would split text wrongly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from core.exchange.files import ExportError


class GGUFExportError(ExportError):
    """A model folder that cannot be exported to GGUF; the message says what and what is supported."""


# Regex Llama 3's tokenizer.json splits with before its byte-level step ("llama-bpe" in llama.cpp).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SUPPORTED_PRE_TOKENIZERS = {
    "gpt-2": "ByteLevel(use_regex=true)",
    "smollm": "Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]",
    "llama-bpe": "Sequence[Split(Llama 3 regex), ByteLevel(use_regex=false)]",
}


@dataclass
class TokenizerMetadata:
    """Everything the `tokenizer.*` GGUF keys hold, ready to write."""

    pre: str  # llama.cpp pre-tokenizer name (see SUPPORTED_PRE_TOKENIZERS)
    tokens: list[str]
    token_types: list[int]  # gguf.TokenType values
    merges: list[str]  # "left right", in rank order
    special_ids: dict[str, int] = field(default_factory=dict)  # bos/eos/unk/pad -> id
    add_bos: bool = False
    add_eos: bool = False
    chat_template: str | list[dict[str, str]] | None = None


def read_tokenizer(folder: Path, config: dict[str, Any]) -> TokenizerMetadata:
    """Read the tokenizer files of ``folder`` and pad the vocabulary to the model's embedding rows.

    ``config`` is the folder's config.json; its vocab_size is the number of rows in the embedding,
    which llama.cpp requires the token list to match.
    """
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise GGUFExportError(
            f"{folder} has no tokenizer.json. GGUF export needs the fast tokenizer file "
            "(save the tokenizer with transformers to create it)."
        )
    data = _load_json(path)
    tok_config = (
        _load_json(folder / "tokenizer_config.json")
        if (folder / "tokenizer_config.json").is_file()
        else {}
    )
    model = data.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise GGUFExportError(
            f"{path}: the tokenizer is {model.get('type')!r}"
            f"{' with byte_fallback' if model.get('byte_fallback') else ''}; GGUF export supports "
            "byte-level BPE tokenizers only (GPT-2 style, as SmolLM2 and Llama 3 use), not "
            "SentencePiece-style ones (Llama 2, Mistral)."
        )
    if data.get("normalizer"):
        raise GGUFExportError(
            f"{path}: the tokenizer has a normalizer ({data['normalizer'].get('type')}), which "
            "llama.cpp's byte-level BPE cannot reproduce; GGUF export supports byte-level BPE "
            "tokenizers without one."
        )
    pre = _pre_tokenizer_name(data.get("pre_tokenizer"), path)

    vocab_size = int(config["vocab_size"])
    by_id: dict[int, str] = {int(i): tok for tok, i in model["vocab"].items()}
    special: set[int] = set()
    added: set[int] = set()
    for token in data.get("added_tokens") or []:
        by_id[int(token["id"])] = token["content"]
        added.add(int(token["id"]))
        if token.get("special"):
            special.add(int(token["id"]))
    if by_id and max(by_id) >= vocab_size:
        raise GGUFExportError(
            f"{path}: token id {max(by_id)} does not fit the model's embedding of {vocab_size} rows "
            "(config.json vocab_size). Resize the model's embeddings to the tokenizer first."
        )

    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            # Embedding rows with no token still need a (never produced) entry, as llama.cpp's converter does.
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(by_id[i])
            if i in special:
                types.append(gguf.TokenType.CONTROL)
            elif i in added:
                types.append(gguf.TokenType.USER_DEFINED)
            else:
                types.append(gguf.TokenType.NORMAL)

    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    ids = {tok: i for i, tok in enumerate(tokens)}
    special_ids = _special_ids(tok_config, config, ids)
    add_bos, add_eos = _added_special_tokens(data, tok_config, special_ids, tokens)
    return TokenizerMetadata(
        pre=pre,
        tokens=tokens,
        token_types=[int(t) for t in types],
        merges=merges,
        special_ids=special_ids,
        add_bos=add_bos,
        add_eos=add_eos,
        chat_template=_chat_template(folder, tok_config),
    )


def write_tokenizer(writer: gguf.GGUFWriter, meta: TokenizerMetadata) -> None:
    """Add the `tokenizer.*` keys to ``writer``."""
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(meta.pre)
    writer.add_token_list(meta.tokens)
    writer.add_token_types(meta.token_types)
    writer.add_token_merges(meta.merges)
    setters = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for name, token_id in meta.special_ids.items():
        setters[name](token_id)
    writer.add_add_bos_token(meta.add_bos)
    writer.add_add_eos_token(meta.add_eos)
    if meta.chat_template:
        writer.add_chat_template(meta.chat_template)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GGUFExportError(f"{path}: cannot be read as JSON ({exc}).") from exc


def _pre_tokenizer_name(pre: dict[str, Any] | None, path: Path) -> str:
    """The llama.cpp pre-tokenizer whose splitting matches tokenizer.json's ``pre`` exactly."""
    steps = (pre or {}).get("pretokenizers") if (pre or {}).get("type") == "Sequence" else [pre]
    kinds = [(s or {}).get("type") for s in steps or []]
    if any(s.get("add_prefix_space") for s in steps or [] if s):
        kinds = []  # llama.cpp never prepends a space, so no name below would match
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        # llama.cpp's "smollm" splits every digit off, then applies GPT-2's regex
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex == _LLAMA3_SPLIT and steps[0].get("behavior") == "Isolated":
            return "llama-bpe"
    supported = "; ".join(f"{v} ({k})" for k, v in SUPPORTED_PRE_TOKENIZERS.items())
    raise GGUFExportError(
        f"{path}: the pre-tokenizer {json.dumps(pre)[:200]} has no llama.cpp equivalent this "
        f"exporter knows, so the GGUF would split text differently. Supported: {supported}."
    )


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _special_ids(
    tok_config: dict[str, Any], config: dict[str, Any], ids: dict[str, int]
) -> dict[str, int]:
    """bos/eos/unk/pad ids: tokenizer_config.json's token strings first, config.json's ids second."""
    out: dict[str, int] = {}
    for name in ("bos", "eos", "unk", "pad"):
        text = _token_text(tok_config.get(f"{name}_token"))
        if text is not None and text in ids:
            out[name] = ids[text]
            continue
        value = config.get(f"{name}_token_id")
        if isinstance(value, list):  # several stop ids: llama.cpp keeps one eos
            value = value[0] if value else None
        if isinstance(value, int) and 0 <= value < len(ids):
            out[name] = value
    return out


def _added_special_tokens(
    data: dict[str, Any], tok_config: dict[str, Any], special_ids: dict[str, int], tokens: list[str]
) -> tuple[bool, bool]:
    """Whether encoding adds BOS / EOS: tokenizer_config.json's flags, else the post-processor's template."""
    add_bos, add_eos = tok_config.get("add_bos_token"), tok_config.get("add_eos_token")
    template = _single_template(data.get("post_processor"))
    if template:
        first, last = template[0], template[-1]
        bos = tokens[special_ids["bos"]] if "bos" in special_ids else None
        eos = tokens[special_ids["eos"]] if "eos" in special_ids else None
        if add_bos is None:
            add_bos = "SpecialToken" in first and first["SpecialToken"]["id"] == bos
        if add_eos is None:
            add_eos = "SpecialToken" in last and last["SpecialToken"]["id"] == eos
    return bool(add_bos), bool(add_eos)


def _single_template(processor: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The single-sequence template of a TemplateProcessing post-processor (possibly in a Sequence)."""
    if not processor:
        return []
    if processor.get("type") == "TemplateProcessing":
        return processor.get("single") or []
    for step in processor.get("processors") or []:
        if found := _single_template(step):
            return found
    return []


def _chat_template(folder: Path, tok_config: dict[str, Any]) -> str | list[dict[str, str]] | None:
    """The chat template: chat_template.jinja if present (transformers' newer layout), else tokenizer_config."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    return tok_config.get("chat_template")
