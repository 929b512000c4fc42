"""Model specs: folders, bad paths, non-causal models, corrupt weights, device choice."""

import json

import pytest
import torch

from core.models import ModelLoadError, format_prompt, load_model, parse_spec, pick_device


def test_parse_spec_kinds(tmp_path):
    assert parse_spec("default").kind == "default"
    assert parse_spec("checkpoint:latest").kind == "checkpoint"
    assert parse_spec("checkpoint:3").value == "3"
    assert parse_spec("model.Q4.gguf").kind == "gguf"
    assert parse_spec(str(tmp_path)).kind == "folder"
    assert parse_spec("HuggingFaceTB/SmolLM2-360M-Instruct").kind == "hub"
    assert parse_spec("./missing/folder").kind == "folder"


def test_tiny_folder_loads_on_cpu_fp32(tiny_model_dir):
    lm = load_model(str(tiny_model_dir), device="cpu")
    assert lm.device.type == "cpu" and lm.dtype == torch.float32
    assert lm.spec == str(tiny_model_dir) and lm.checkpoint_id is None
    assert lm.tokenizer.padding_side == "left" and lm.tokenizer.pad_token is not None
    text = format_prompt(lm.tokenizer, [{"role": "user", "content": "hi"}])
    assert text.endswith("<|im_start|>assistant\n")


def test_a_tokenizer_is_parsed_once_per_content_and_shared(tiny_model_dir, tmp_path):
    import shutil

    first = load_model(str(tiny_model_dir), device="cpu")
    again = load_model(str(tiny_model_dir), device="cpu")
    assert again.tokenizer is first.tokenizer and again.model is not first.model
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")  # same files, another folder
    assert load_model(str(copy), device="cpu").tokenizer is first.tokenizer
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["model_max_length"] = 77
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    changed = load_model(str(copy), device="cpu").tokenizer
    assert changed is not first.tokenizer and changed.model_max_length == 77


def test_a_shared_tokenizer_serves_threads_with_different_padding(tiny_model_dir):
    """Generation pads a batch while training encodes single texts and sampling decodes, each on
    its own thread and through one tokenizer: every result is what a lone thread would get."""
    import threading

    from core.models import detokenize, tokenize

    tok = load_model(str(tiny_model_dir), device="cpu").tokenizer
    texts = ["the sea " * n for n in (1, 9, 4, 30)]
    padded = tokenize(tok, texts, padding=True, return_tensors="pt")["input_ids"].tolist()
    single = [tokenize(tok, t)["input_ids"] for t in texts]
    decoded = [detokenize(tok, ids) for ids in single]
    problems: list[str] = []

    def work(kind: str) -> None:
        try:
            for i in range(150):
                if kind == "pad":
                    got = tokenize(tok, texts, padding=True, return_tensors="pt")["input_ids"]
                    ok = got.tolist() == padded
                elif kind == "one":
                    ok = tokenize(tok, texts[i % 4])["input_ids"] == single[i % 4]
                else:
                    ok = detokenize(tok, single[i % 4]) == decoded[i % 4]
                if not ok:
                    problems.append(f"{kind}: wrong result at {i}")
        except Exception as e:  # noqa: BLE001 - a borrow error of the Rust tokenizer, say
            problems.append(f"{kind}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(k,)) for k in ("pad", "one", "decode") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


def test_missing_path_names_the_spec(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(str(tmp_path / "nope.gguf"))


def test_folder_without_config(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path))


def test_not_a_causal_lm(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_model(str(tmp_path))
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "architectures": ["BertForSequenceClassification"]})
    )
    with pytest.raises(ModelLoadError, match="not a causal language model"):
        load_model(str(tmp_path))


def test_corrupt_weights(tiny_model_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        load_model(str(bad))


def test_corrupt_gguf(tmp_path):
    f = tmp_path / "broken.gguf"
    f.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="GGUF"):
        load_model(str(f))


def test_hub_id_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not be found locally or downloaded"):
        load_model("nobody-here/no-such-model-xyz")


def test_device_override_and_default():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device(None).type in ("cpu", "mps")
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            pick_device("cuda")
