"""Shared fixtures: an isolated data dir, a project file, and a tiny random causal LM.

The tiny model (2 layers, hidden 32, a 400-token byte-level BPE trained here) keeps model tests
fast; it is saved as a Hugging Face folder, so loading it also exercises the folder spec path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models on a 2-core machine: one thread is ~50x faster than two fighting over the cores.
torch.set_num_threads(1)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about the sea. The sea is blue and wide.",
    "What is the capital of France? Paris is the capital of France.",
    "Explain gravity in one sentence. Things fall because mass attracts mass.",
    "I love this! Great, wonderful, happy, excellent, good, bad, terrible, sad.",
    "def add(a, b): return a + b  # code and numbers 0123456789",
    "你好，世界。请写一首关于春天的诗。",
]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never touch the user's real data dir; share the converted default model across tests."""
    shared = Path(os.environ.get("RLHF_STUDIO_TEST_HOME", tmp_path_factory.getbasetemp() / "home"))
    monkeypatch.setenv("RLHF_STUDIO_HOME", str(shared))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _fp32_on_cpu(monkeypatch):
    """load_model on a CPU would time the tiny model in fp32 and bf16 (noise, a second a load)
    and might pick either: tests get fp32 as asked for. Tests of the measuring itself
    (tests/core/models/test_precision.py) put ``precision.cpu_dtype`` back."""
    import torch

    from core.models import precision

    monkeypatch.setattr(precision, "cpu_dtype", lambda *a, **kw: (torch.float32, "default"))


@pytest.fixture
def store(tmp_path):
    from core.store import ProjectStore

    s = ProjectStore(tmp_path / "project.db")
    yield s
    s.close()


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A random 2-layer Llama with a byte-level BPE tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
    )
    tok.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory) -> Path:
    """A second tiny model (other weights, same tokenizer): two models to compare."""
    return build_tiny_model(tmp_path_factory.mktemp("other-tiny-model"), seed=7)


@pytest.fixture
def project_with_prompts(store):
    """A project with five short prompts (one chat, one Chinese)."""

    prompts = [
        ("Write a short poem about the sea.", None),
        ("What is the capital of France?", None),
        ("Explain gravity in one sentence.", None),
        ("请写一首关于春天的诗。", None),
        (
            "Say hello.",
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        ),
    ]
    store.add_prompts(({"text": t, "messages": m} for t, m in prompts), source="test")
    return store
