"""How to run an exported GGUF file: llama.cpp, an Ollama Modelfile, LM Studio, transformers.

The Modelfile's TEMPLATE is Go template text, not the model's Jinja chat template, so it is
derived by rendering the chat template on marker messages and cutting out what each role's turn
adds (docs/exports.md). A template whose turns cannot be cut apart this way (one that renders a
conversation differently as it grows) gets no TEMPLATE and a note saying so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.exchange.card import DEFAULT_HUB_ID
from core.models import DEFAULT_MODEL_NAME

_SYSTEM, _USER, _ASSISTANT, _USER2 = "QQSYSTEMQQ", "QQUSERQQ", "QQASSISTANTQQ", "QQUSERTWOQQ"


@dataclass
class ChatTurns:
    """What the chat template writes around each turn, as literal text."""

    lead: str  # before the first turn (text the runtime does not add itself)
    system: tuple[str, str] | None  # before and after a system message; None: not supported
    user: tuple[str, str]
    assistant_after: str  # after an assistant message
    generation: str  # what starts the assistant's turn
    default_system: str | None  # the system message the template adds when there is none


def chat_turns(tokenizer: Any) -> ChatTurns | None:
    """The template's turns, or None when there is no template or it cannot be cut apart."""
    if not getattr(tokenizer, "chat_template", None):
        return None

    def render(messages: list[tuple[str, str]], generation: bool = False) -> str:
        return tokenizer.apply_chat_template(
            [{"role": r, "content": c} for r, c in messages],
            tokenize=False,
            add_generation_prompt=generation,
        )

    try:
        one = render([("user", _USER)])
        two = render([("user", _USER), ("assistant", _ASSISTANT)])
        three = render([("user", _USER), ("assistant", _ASSISTANT), ("user", _USER2)])
        prompted = render([("user", _USER)], generation=True)
    except Exception:  # noqa: BLE001 - a template may raise on anything; then there is no TEMPLATE
        return None
    if not (two.startswith(one) and three.startswith(two) and prompted.startswith(one)):
        return None
    generation = prompted[len(one) :]
    user = _around(three[len(two) :], _USER2)
    assistant = _around(two[len(one) :], _ASSISTANT)
    if user is None or assistant is None or assistant[0] != generation:
        return None
    first_turn = user[0] + _USER + user[1]
    if not one.endswith(first_turn):
        return None
    preamble = one[: -len(first_turn)]
    system = _system_turn(render, first_turn)
    lead, default_system = preamble, None
    if system is not None:
        before, after = system
        if (
            preamble.startswith(before)
            and preamble.endswith(after)
            and len(preamble) > len(before + after)
        ):
            lead, default_system = "", preamble[len(before) : len(preamble) - len(after)]
        elif before.startswith(preamble):  # e.g. a BOS written before every conversation
            system = (before[len(preamble) :], after)
    bos = getattr(tokenizer, "bos_token", None)
    if lead and lead == bos:
        lead = ""  # llama.cpp and Ollama add BOS themselves when the GGUF says to
    return ChatTurns(lead, system, user, assistant[1], generation, default_system)


def _around(text: str, marker: str) -> tuple[str, str] | None:
    if text.count(marker) != 1:
        return None
    before, after = text.split(marker)
    return before, after


def _system_turn(render: Any, first_turn: str) -> tuple[str, str] | None:
    try:
        text = render([("system", _SYSTEM), ("user", _USER)])
    except Exception:  # noqa: BLE001 - templates that refuse a system role raise
        return None
    if not text.endswith(first_turn):
        return None
    return _around(text[: -len(first_turn)], _SYSTEM)


def stop_tokens(tokenizer: Any, turns: ChatTurns | None) -> list[str]:
    """The special tokens that end or start a turn, and the end-of-sequence token."""
    special = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
    eos = getattr(tokenizer, "eos_token", None)
    found = [eos] if eos else []
    if turns is not None:
        edges = turns.assistant_after + turns.user[0] + turns.generation
        found += [t for t in special if t in edges and t not in found]
    return found


def modelfile(tokenizer: Any, gguf_name: str) -> tuple[str, list[str]]:
    """An Ollama Modelfile for the GGUF file ``gguf_name`` (in the same folder), and notes."""
    turns = chat_turns(tokenizer)
    lines = [f"FROM ./{gguf_name}"]
    notes = []
    if turns is None:
        notes.append(
            "The chat template could not be turned into an Ollama TEMPLATE; Ollama will use "
            "the template inside the GGUF file if it recognises it."
        )
    else:
        system = ""
        if turns.system is not None:
            before, after = turns.system
            system = f"{{{{ if .System }}}}{before}{{{{ .System }}}}{after}{{{{ end }}}}"
        user_before, user_after = turns.user
        template = (
            f"{turns.lead}{system}{{{{ range .Messages }}}}"
            f'{{{{ if eq .Role "user" }}}}{user_before}{{{{ .Content }}}}{user_after}'
            f"{turns.generation}"
            f'{{{{ else if eq .Role "assistant" }}}}{{{{ .Content }}}}{turns.assistant_after}'
            "{{ end }}{{ end }}"
        )
        lines.append(f'TEMPLATE """{template}"""')
        if turns.default_system:
            lines.append(f'SYSTEM """{turns.default_system}"""')
    for token in stop_tokens(tokenizer, turns):
        lines.append(f'PARAMETER stop "{token}"')
    return "\n".join(lines) + "\n", notes


def usage_lines(gguf_name: str, quant: str, tokenizer: Any) -> list[str]:
    """The card's "How to run" section for the GGUF file ``gguf_name``."""
    stem = gguf_name.removesuffix(".gguf")
    text, notes = modelfile(tokenizer, gguf_name)
    return [
        "## How to run",
        "",
        f"`{gguf_name}` holds the weights ({quant}), the tokenizer and the chat template in one "
        "file. Keep this card beside it.",
        "",
        "**llama.cpp** (the chat template inside the file formats the conversation):",
        "",
        "```sh",
        f"llama-cli -m {gguf_name} -cnv             # chat in the terminal",
        f"llama-server -m {gguf_name} --port 8080   # OpenAI-compatible server",
        "```",
        "",
        "**Ollama**: save these lines as `Modelfile` beside the file, then "
        f"`ollama create {stem} -f Modelfile` and `ollama run {stem}`.",
        "",
        "```",
        text.rstrip("\n"),
        "```",
        "",
        *([*notes, ""] if notes else []),
        "**LM Studio**: `lms import " + gguf_name + "`, or put the file in its models folder.",
        "",
        "**transformers** (de-quantizes to float weights) and **RLHF Studio** "
        f"(`--model {gguf_name}`):",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'model = AutoModelForCausalLM.from_pretrained(".", gguf_file="{gguf_name}")',
        f'tokenizer = AutoTokenizer.from_pretrained(".", gguf_file="{gguf_name}")',
        "```",
        "",
    ]


def default_model_card(gguf_name: str, quant: str, tokenizer: Any) -> str:
    """The card of the embedded default model exported as GGUF (no training behind it)."""
    return "\n".join(
        [
            "---",
            f"base_model: {DEFAULT_HUB_ID}",
            "tags:",
            "- rlhf-studio",
            "- gguf",
            "pipeline_tag: text-generation",
            "---",
            "",
            f"# {DEFAULT_MODEL_NAME} ({quant} GGUF), the default model of RLHF Studio",
            "",
            f"The embedded default model, not trained in RLHF Studio: [{DEFAULT_HUB_ID}]"
            f"(https://huggingface.co/{DEFAULT_HUB_ID}) as RLHF Studio loads it.",
            "",
            *usage_lines(gguf_name, quant, tokenizer),
        ]
    )
