"""GGUF tokenizer metadata: what transformers rebuilds from the file encodes like the original.

Byte-level BPE only; each supported pre-tokenizer maps to the llama.cpp name that splits text the
same way, and anything else is refused rather than exported wrong.
"""

from __future__ import annotations

import json
import shutil

import gguf
import pytest
from exchange_checks import PROMPTS, chat_ids, export_to, load_gguf, load_original, sharp_llama

from core.exchange.gguf import GGUFExportError, export_gguf
from core.exchange.gguf_tokenizer import read_tokenizer

BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True}
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEXTS = [
    "It's 12345 o'clock!\n\n  Hello   world",
    "The quick brown fox jumps over the lazy dog.",
    "def add(a, b): return a + b  # code and numbers 0123456789",
    "你好，世界。请写一首关于春天的诗。",
]


def with_tokenizer(source, folder, **changes):
    """A copy of the model folder ``source`` whose tokenizer.json has ``changes`` applied."""
    shutil.copytree(source, folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer.update(changes)
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    return folder


@pytest.mark.parametrize(
    ("pre_tokenizer", "name"),
    [
        ({**BYTE_LEVEL, "use_regex": True}, "gpt-2"),
        (
            {
                "type": "Sequence",
                "pretokenizers": [
                    {"type": "Digits", "individual_digits": True},
                    {**BYTE_LEVEL, "use_regex": True},
                ],
            },
            "smollm",
        ),
    ],
)
def test_pre_tokenizer_names(tiny_model_dir, tmp_path, pre_tokenizer, name):
    """Each tokenizer.json pre-tokenizer gets the llama.cpp name whose regexes split the same way."""
    folder = with_tokenizer(tiny_model_dir, tmp_path / "m", pre_tokenizer=pre_tokenizer)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert read_tokenizer(folder, config).pre == name


@pytest.mark.parametrize(
    "pre_tokenizer", [{"type": "Whitespace"}, {**BYTE_LEVEL, "add_prefix_space": True}]
)
def test_unknown_pre_tokenizer_is_refused(tiny_model_dir, tmp_path, pre_tokenizer):
    """A pre-tokenizer with no llama.cpp equivalent would split text wrongly in every front end."""
    folder = with_tokenizer(tiny_model_dir, tmp_path / "m", pre_tokenizer=pre_tokenizer)
    with pytest.raises(GGUFExportError, match="pre-tokenizer"):
        export_gguf(folder, tmp_path / "m.gguf", "f16")
    assert not (tmp_path / "m.gguf").exists()


def test_llama3_style_tokenizer_round_trips(tiny_model_dir, tmp_path):
    """Llama 3's split regex becomes llama.cpp's "llama-bpe", and its BOS-adding template add_bos."""
    from tokenizers import Regex, Tokenizer, pre_tokenizers, processors

    folder = tmp_path / "llama3"
    shutil.copytree(tiny_model_dir, folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
    )
    tok.save(str(folder / "tokenizer.json"))
    path = export_to(folder, tmp_path / "out", "f16")
    fields = gguf.GGUFReader(path).fields
    assert fields["tokenizer.ggml.pre"].contents() == "llama-bpe"
    assert fields["tokenizer.ggml.add_bos_token"].contents() is True
    _, ref_tok = load_original(folder)
    _, gguf_tok = load_gguf(path)
    assert [gguf_tok(t)["input_ids"] for t in TEXTS] == [ref_tok(t)["input_ids"] for t in TEXTS]
    assert ref_tok("hi")["input_ids"][0] == 1  # the template's BOS really is added


@pytest.mark.slow
def test_default_model_tokenizer_survives_gguf(tmp_path):
    """The real tokenizer (49152 tokens, 17 control tokens) as metadata, and round-tripped on
    tiny random weights: the chat-templated ids from the GGUF equal the original's."""
    from transformers import AutoTokenizer

    from core.models import default_model_dir

    real = default_model_dir()
    config = json.loads((real / "config.json").read_text(encoding="utf-8"))
    meta = read_tokenizer(real, config)
    merges = json.loads((real / "tokenizer.json").read_text(encoding="utf-8"))["model"]["merges"]
    assert meta.pre == "gpt-2"
    assert len(meta.tokens) == 49152
    assert meta.tokens[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert meta.token_types[:17] == [gguf.TokenType.CONTROL] * 17
    assert set(meta.token_types[17:]) == {gguf.TokenType.NORMAL}
    assert meta.special_ids == {"bos": 1, "eos": 2, "unk": 0, "pad": 2}
    assert (meta.add_bos, meta.add_eos) == (False, False)
    assert len(meta.merges) == len(merges) and meta.merges[0] == " ".join(merges[0])
    assert meta.chat_template == (real / "chat_template.jinja").read_text(encoding="utf-8")

    folder = sharp_llama(tmp_path / "real-tokenizer", real)
    path = export_to(folder, tmp_path / "out", "f16")
    ref_tok = AutoTokenizer.from_pretrained(real)
    gguf_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert [chat_ids(gguf_tok, p) for p in PROMPTS] == [chat_ids(ref_tok, p) for p in PROMPTS]
