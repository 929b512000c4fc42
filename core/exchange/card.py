"""The model card (README.md) of an exported checkpoint: what it is, how it was trained, how to
load it (docs/exports.md)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.checkpoints import run_config, verify
from core.store import ProjectStore

DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where the embedded default comes from


def model_card(
    store: ProjectStore,
    rec: dict[str, Any],
    form: str,
    folder: Path | None = None,
    usage: list[str] | None = None,
) -> str:
    """README.md for an exported checkpoint: what it is, how it was trained, how to load it.

    ``usage`` replaces the "How to load" section (a GGUF file: core.exchange.gguf_card)."""
    run = _run(store, rec.get("run_id"))
    folder = folder or verify(store, rec)
    config = run_config(folder) or _as_dict(_loads(run.get("config")))
    metrics = {
        **_final_metrics(store, rec),
        **_as_dict(rec.get("metrics")),
    }
    algo = run.get("algo") or config.get("algo") or "unknown"
    base = rec.get("base_model") or run.get("base_model") or "unknown"
    hub_base = DEFAULT_HUB_ID if base == "default" else base
    is_hub = hub_base.count("/") == 1 and not hub_base.startswith((".", "/", "~"))
    reward = rec["kind"] == "reward"
    what = "a reward model" if reward else "a policy (causal language model)"
    library = {"adapter": "peft", "gguf": None}.get(form, "transformers")
    front = ["---", *([f"library_name: {library}"] if library else [])]
    if is_hub:
        front.append(f"base_model: {hub_base}")
    front += [
        "tags:",
        "- rlhf-studio",
        f"- {algo}",
        "- rlhf",
        *(["- gguf"] if form == "gguf" else []),
    ]
    if not reward:
        front.append("pipeline_tag: text-generation")
    front.append("---")
    lines = [
        *front,
        "",
        f"# checkpoint:{rec['id']} — {what} trained with {algo.upper()} in RLHF Studio",
        "",
        f"- **Kind:** {rec['kind']}"
        + (" — it scores responses; it does not generate." if reward else ""),
        f"- **Form:** {_FORMS[form]}",
        f"- **Base model:** `{base}`" + (f" ({hub_base})" if hub_base != base else ""),
        f"- **Algorithm:** {algo}",
        f"- **Step:** {rec['step']}",
        f"- **Checkpoint saved:** {rec['created_at']}",
        f"- **Exported:** {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- **Checkpoint uuid:** {rec['uuid']}" + (f", run {run['uuid']}" if run else ""),
        f"- **sha256:** {rec.get('sha256') or 'n/a'}",
        "",
        "## Training data",
        "",
        *_data_lines(store, run),
        "",
        "## Hyper-parameters",
        "",
        *_table(config, "setting"),
        "",
        "## Final metrics",
        "",
        *_table(metrics or {}, "metric"),
        "",
        *(usage or _load_section(form, reward, hub_base)),
    ]
    if reward:
        lines += _pooling_lines(config.get("pooling") or "last", form)
    return "\n".join(lines)


def _pooling_lines(pooling: str, form: str) -> list[str]:
    """How a reward model's score is computed (``core.models.reward``, pooling)."""
    if pooling != "mean":
        return [
            "## How it scores",
            "",
            "The score of a prompt and response is the model's output "
            "on the chat-formatted prompt followed by the response (no end-of-turn token): "
            "the head on the last token, as `transformers` computes it.",
            "",
        ]
    lines = [
        "## How it scores",
        "",
        "This reward model was trained with **mean pooling**: the "
        "score is its head applied to the mean of the *response* tokens' last hidden states "
        "(prompt chat-formatted, response appended, no end-of-turn token). "
        "`AutoModelForSequenceClassification`'s own output reads the last token instead, so "
        "compute the score like this:",
        "",
    ]
    if form == "adapter":
        return lines[:-1] + [" RLHF Studio does this in `core.checkpoints.load_reward_model`.", ""]
    return lines + [
        "```python",
        "import torch",
        "",
        "def reward(model, tokenizer, prompt, response):",
        '    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],',
        "                                         tokenize=False, add_generation_prompt=True)",
        '    p = tokenizer(text, add_special_tokens=False)["input_ids"]',
        '    r = tokenizer(response, add_special_tokens=False)["input_ids"]',
        "    with torch.no_grad():",
        "        body = getattr(model, model.base_model_prefix)",
        "        hidden = body(torch.tensor([p + r])).last_hidden_state[0]",
        "        return model.score(hidden[len(p):].mean(0)).item()",
        "```",
        "",
    ]


_FORMS = {
    "full": "full weights",
    "adapter": "a LoRA adapter (load it over the base model with peft)",
    "merged": "full weights (the LoRA adapter merged into the base model)",
    "gguf": "one GGUF file for llama.cpp, Ollama and LM Studio (a LoRA adapter is merged first)",
}


def _run(store: ProjectStore, run_id: int | None) -> dict[str, Any]:
    if run_id is None:
        return {}
    return store.run_row(run_id) or {}


def _data_lines(store: ProjectStore, run: dict[str, Any]) -> list[str]:
    ids = run.get("rating_ids")
    if not ids:
        return ["No record of the ratings this checkpoint was trained on."]
    (n, a, p), rows = store.ratings_breakdown(json.loads(ids))
    out = [f"{_n(n, 'rating')} by {_n(a, 'annotator')} on {_n(p, 'prompt')}:", ""]
    out += [
        f"- {kind}: {_n(n, 'rating')} ({_n(a, 'annotator')}, {_n(p, 'prompt')})"
        for kind, n, a, p in rows
    ]
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _final_metrics(store: ProjectStore, rec: dict[str, Any]) -> dict[str, float]:
    if rec.get("run_id") is None:
        return {}
    return store.final_metrics(rec["run_id"], rec["step"])


def _table(values: dict[str, Any], what: str) -> list[str]:
    if not isinstance(values, dict) or not values:
        return ["Not recorded."]
    out = [f"| {what} | value |", "|---|---|"]
    for k, v in values.items():
        if isinstance(v, float):
            v = f"{v:.6g}"
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, ensure_ascii=False)
        out.append(f"| {k} | {v} |")
    return out


def _load_section(form: str, reward: bool, base: str) -> list[str]:
    return ["## How to load", "", "```python", *_load_snippet(form, reward, base), "```", ""]


def _load_snippet(form: str, reward: bool, base: str) -> list[str]:
    path = '"path/to/this/folder"'
    if reward and form != "adapter":
        return [
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
            f"model = AutoModelForSequenceClassification.from_pretrained({path})  # one score",
            f"tokenizer = AutoTokenizer.from_pretrained({path})",
        ]
    if reward:
        return [
            "# a LoRA adapter over a reward model built from the base model; RLHF Studio loads it",
            "# with core.checkpoints.load_reward_model",
        ]
    if form == "adapter":
        return [
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            f"model = PeftModel.from_pretrained(base, {path})",
            f"tokenizer = AutoTokenizer.from_pretrained({path})",
        ]
    return [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained({path})",
        f"tokenizer = AutoTokenizer.from_pretrained({path})",
    ]


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _loads(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
