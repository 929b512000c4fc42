"""`export checkpoint --format gguf`: checkpoints (adapters merged first) and the default model as
one GGUF file with a model card beside it that says how to run it in llama.cpp and Ollama."""

from __future__ import annotations

import shutil

import pytest
import torch
from exchange_checks import PROMPTS, chat_ids, load_gguf, save_checkpoint

import main
from core.exchange import GGUFExportError, export_checkpoint_gguf
from core.exchange.gguf_card import chat_turns, default_model_card, modelfile

CHATML_MODELFILE = """FROM ./m.gguf
TEMPLATE \"\"\"{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ range .Messages }}{{ if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
<|im_start|>assistant
{{ else if eq .Role "assistant" }}{{ .Content }}<|im_end|>
{{ end }}{{ end }}\"\"\"
PARAMETER stop "<|im_end|>"
PARAMETER stop "<|im_start|>"
"""


def export(store, *args: str) -> int:
    return main.main(["--db", str(store.path), "export", "checkpoint", *args])


def test_checkpoint_gguf_loads_back_with_a_card_on_running_it(
    project_with_prompts, tmp_path, tiny_model_dir, capsys
):
    from transformers import AutoTokenizer

    from core.models import load_model

    store = project_with_prompts
    cid = save_checkpoint(store, tmp_path, tiny_model_dir)
    out = tmp_path / "export" / "m.gguf"
    assert (
        export(store, "checkpoint:latest", "--format", "gguf", "--quant", "q8_0", "-o", str(out))
        == 0
    )
    said = capsys.readouterr().out
    assert f"checkpoint:{cid} (full) exported to {out} as q8_0 GGUF" in said
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.README.md", "m.gguf"]
    card = (tmp_path / "export" / "m.README.md").read_text(encoding="utf-8")
    for text in ("- gguf", "DPO", "| beta | 0.1 |", "llama-cli -m m.gguf", "ollama create m"):
        assert text in card, text
    assert CHATML_MODELFILE in card
    assert "library_name" not in card

    loaded = load_model(str(out))  # RLHF Studio's own --model FILE.gguf
    checkpoint_tok = AutoTokenizer.from_pretrained(store.checkpoint(cid)["path"])
    ids = [chat_ids(checkpoint_tok, p) for p in PROMPTS]
    assert [chat_ids(loaded.tokenizer, p) for p in PROMPTS] == ids
    with torch.no_grad():
        out_ids = loaded.model.generate(torch.tensor([ids[0]]), max_new_tokens=2, do_sample=False)
    assert out_ids.shape[1] == len(ids[0]) + 2


def test_adapter_is_merged_into_the_gguf(project_with_prompts, tmp_path, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = project_with_prompts
    cid = save_checkpoint(store, tmp_path, tiny_model_dir, adapter=True)
    seen = []
    res = export_checkpoint_gguf(store, cid, tmp_path / "out" / "a.gguf", progress=seen.append)
    assert (res.form, res.quant, res.checkpoint_id) == ("merged", "f16", cid)
    assert seen[0].text == f"merging the adapter of checkpoint:{cid}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.README.md", "a.gguf"]
    exported, _ = load_gguf(res.path)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    adapter = store.checkpoint(cid)["path"]
    merged = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter
    )
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        want, got, plain = merged(ids).logits, exported(ids).logits, base(ids).logits
    assert torch.allclose(got, want, atol=2e-3)
    assert not torch.allclose(got, plain, atol=2e-3)  # the adapter really is in the file


def test_reward_and_other_architectures_are_refused_by_name(
    project_with_prompts, tmp_path, tiny_model_dir, capsys
):
    from transformers import GPT2Config, GPT2LMHeadModel

    store = project_with_prompts
    reward = save_checkpoint(store, tmp_path, tiny_model_dir, kind="reward")
    out = tmp_path / "out" / "m.gguf"
    assert export(store, f"checkpoint:{reward}", "--format", "gguf", "-o", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"checkpoint:{reward} is a reward model" in err

    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=400)).save_pretrained(
        gpt2
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(tiny_model_dir / name, gpt2 / name)
    for adapter in (False, True):  # an adapter's base is checked before it is merged
        folder = tmp_path / str(adapter)
        cid = save_checkpoint(store, folder, gpt2, adapter=adapter, lora=["c_attn"])
        with pytest.raises(GGUFExportError, match="GPT2LMHeadModel"):
            export_checkpoint_gguf(store, cid, out)
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--quant", "q8_0", "-o", "x"], "--quant applies to --format gguf"),
        (["default", "-o", "x"], "is not a checkpoint of this project"),
        (["--format", "gguf", "-o", "x.bin"], "ending in .gguf"),
        (["--format", "gguf", "-o", "x.gguf"], "no policy checkpoint yet"),
    ],
)
def test_bad_options_exit_2_with_one_line(project_with_prompts, tmp_path, capsys, args, says):
    args = [str(tmp_path / a) if a.startswith("x") else a for a in args]
    assert export(project_with_prompts, *args) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and err.count("\n") == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("x")]


# ---- the Ollama Modelfile --------------------------------------------------------------------------
def test_modelfile_follows_the_chat_template(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert modelfile(tok, "m.gguf") == (CHATML_MODELFILE, [])
    chatml = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    tok.chat_template = (  # a system message of its own when none is given, as SmolLM2's
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe kind.<|im_end|>\n"
        "{% endif %}" + chatml
    )
    text, _ = modelfile(tok, "m.gguf")
    assert text == CHATML_MODELFILE.replace("PARAMETER", 'SYSTEM """Be kind."""\nPARAMETER', 1)
    tok.chat_template = "{{ bos_token }}" + chatml  # llama.cpp and Ollama add the BOS themselves
    turns = chat_turns(tok)
    assert turns.lead == "" and turns.system == ("<|im_start|>system\n", "<|im_end|>\n")
    assert modelfile(tok, "m.gguf")[0] == CHATML_MODELFILE
    tok.chat_template = "{% for m in messages %}{{ loop.length }}{{ m['content'] }}{% endfor %}"
    text, notes = modelfile(tok, "m.gguf")  # the turns change as the conversation grows
    assert "TEMPLATE" not in text and "could not be turned into an Ollama TEMPLATE" in notes[0]
    assert text == 'FROM ./m.gguf\nPARAMETER stop "<|im_end|>"\n'


def test_default_model_card_names_the_model_and_how_to_run_it(tiny_model_dir):
    from transformers import AutoTokenizer

    card = default_model_card("smol.gguf", "q8_0", AutoTokenizer.from_pretrained(tiny_model_dir))
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert "SmolLM2-135M-Instruct (q8_0 GGUF)" in card and "not trained" in card
    assert "llama-cli -m smol.gguf -cnv" in card and "FROM ./smol.gguf" in card


@pytest.mark.slow
def test_default_model_exports_as_gguf(tmp_path, capsys):
    from core.models import load_model

    out = tmp_path / "smol.gguf"
    db = str(tmp_path / "none.db")  # `default` needs no project
    args = ["--db", db, "export", "checkpoint", "default", "--format", "gguf", "-o", str(out)]
    assert main.main(args) == 0
    assert "the default model SmolLM2-135M-Instruct exported" in capsys.readouterr().out
    card = (tmp_path / "smol.README.md").read_text(encoding="utf-8")
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in card
    assert load_model(str(out)).model.config.num_hidden_layers == 30
    assert not (tmp_path / "none.db").exists()


@pytest.mark.slow
@pytest.mark.parametrize(("quant", "min_agreement"), [("f16", 0.98), ("q8_0", 0.95)])
def test_adapter_checkpoint_of_the_default_model_agrees(
    project_with_prompts, tmp_path, quant, min_agreement
):
    """A LoRA checkpoint over the default model, merged and exported: the GGUF predicts what the
    merged checkpoint predicts, and its tokenizer encodes the chat-templated prompts alike."""
    from exchange_checks import teacher_forced_agreement

    from core.models import default_model_dir
    from core.models.loading import load_checkpoint_model

    store = project_with_prompts
    cid = save_checkpoint(store, tmp_path, default_model_dir(), adapter=True)
    res = export_checkpoint_gguf(store, cid, tmp_path / "out" / "m.gguf", quant)
    reference, ref_tok = load_checkpoint_model(
        store.checkpoint(cid), store=store, dtype=torch.float32
    )
    exported, gguf_tok = load_gguf(res.path)
    prompt_ids = [chat_ids(ref_tok, p) for p in PROMPTS]
    assert [chat_ids(gguf_tok, p) for p in PROMPTS] == prompt_ids
    agreement, logit_error = teacher_forced_agreement(reference.eval(), exported, prompt_ids)
    print(
        f"\nadapter checkpoint of the default model, {quant}: export (merge included) "
        f"{res.seconds:.1f} s, {res.size_bytes / 2**20:.1f} MiB, agreement {agreement:.1%}, "
        f"max logit error {logit_error:.2%}"
    )
    assert agreement >= min_agreement
