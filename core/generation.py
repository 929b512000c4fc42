"""K candidate responses per prompt, batched, written to the project file as samples.

``generate_samples`` is a generator: it yields a ``GenerationProgress`` after each batch, so a
caller (the CLI's tqdm bar, or gui/workers.py) shows progress. The cancel flag is checked before
every new token, so a cancel takes effect within one decoding step, not at the end of a batch; the
batch it interrupts is dropped. Samples of one batch are written in one transaction: a cancelled
run never leaves half of a prompt's candidates behind.
"""

from __future__ import annotations

import inspect
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.errors import UserError
from core.models import LoadedModel, detokenize, format_prompt, tokenize
from core.store import ProjectStore


@dataclass
class GenerationParams:
    per_prompt: int = field(default=4, metadata={"help": "candidates (K) per prompt"})
    max_new_tokens: int = field(default=128, metadata={"help": "longest response in tokens"})
    temperature: float = field(default=0.8, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling threshold"})
    seed: int | None = field(default=None, metadata={"help": "random seed (recorded per sample)"})
    batch_size: int = field(
        default=32, metadata={"help": "sequences per forward pass (several prompts × K)"}
    )

    def validate(self) -> None:
        if self.per_prompt < 1:
            raise UserError("--per-prompt must be at least 1")
        if self.max_new_tokens < 1:
            raise UserError("--max-new-tokens must be at least 1")
        if self.temperature < 0:
            raise UserError("--temperature must be 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise UserError("--top-p must be in (0, 1]")
        if self.batch_size < 1:
            raise UserError("batch size must be at least 1")


class GenerationCancelled(Exception):
    """The cancel flag was set while a batch was being decoded; nothing of that batch is kept."""


@dataclass
class GenerationProgress:
    done: int  # prompts finished
    total: int
    sample_ids: list[int]  # written by the last batch
    tokens: int  # generated so far
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass
class GenerationPreview:
    """The responses of a batch as far as they are written (``texts[i]``: prompt ``i``'s K)."""

    prompt_ids: list[int]
    texts: list[list[str]]


PREVIEW_EVERY_S = 0.2  # how often a batch's partial text is decoded for a preview


def pick_prompts(store: ProjectStore, limit: int | None = None, split: str = "train") -> list[int]:
    """Prompts of ``split`` with the fewest samples first (then oldest), so repeated runs cover
    the set. Evaluation prompts get samples from the arena, which knows the models it compares."""
    return store.least_sampled_prompts(split, limit)


@torch.inference_mode()
def generate_texts(
    loaded: LoadedModel,
    prompts: list[list[dict[str, str]]],
    params: GenerationParams,
    seed: int | None = None,
    cancel: threading.Event | None = None,
    preview: Callable[[list[list[str]]], None] | None = None,
) -> list[list[tuple[str, int]]]:
    """K sampled (text, n_tokens) per prompt for a list of chat prompts, in one batched call.

    Decoder-only models take a lean path (``_sample_shared_prefill``): each prompt is encoded
    once and its KV cache copied K times, sampling keeps only the top-k logits before top-p, and
    finished rows leave the batch. Anything else (encoder-decoder models, generation configs with
    extra logits processors such as a repetition penalty) goes through ``model.generate``.
    ``preview``, if given, receives the K texts per prompt as far as they are written, every
    ``PREVIEW_EVERY_S`` while decoding (on the calling thread).
    Raises ``GenerationCancelled`` when ``cancel`` is set before the last token.
    """
    tok = loaded.tokenizer
    k = params.per_prompt
    texts = [format_prompt(tok, m) for m in prompts]
    stop_ids = _stop_ids(loaded)
    on_step = None
    if preview is not None:
        due = time.monotonic() + PREVIEW_EVERY_S

        def on_step(tokens: torch.Tensor, written: int) -> None:
            nonlocal due
            if time.monotonic() >= due:
                rows = tokens[:, :written].tolist()
                preview([[t for t, _ in r] for r in _texts(tok, rows, k, stop_ids)])
                due = time.monotonic() + PREVIEW_EVERY_S

    if lean_path_applies(loaded.model):
        rows = _sample_shared_prefill(loaded, texts, params, seed, cancel, on_step)
    else:
        texts_k = [t for t in texts for _ in range(k)]
        rows = _sample_with_generate(loaded, texts_k, params, seed, cancel, on_step)
    return _texts(tok, rows, k, stop_ids)


def _texts(
    tok: Any, rows: list[list[int]], k: int, stop_ids: set[int]
) -> list[list[tuple[str, int]]]:
    """(text, n_tokens) per row, grouped K per prompt; a row ends at its first stop id."""
    results: list[list[tuple[str, int]]] = [[] for _ in range(len(rows) // k)]
    for row, ids in enumerate(rows):
        n = len(ids)
        for i, t in enumerate(ids):
            if t in stop_ids:
                n = i
                break
        text = detokenize(tok, ids[:n], skip_special_tokens=True).strip()
        results[row // k].append((text, n))
    return results


# Generation-config fields whose non-default values need a logits processor of model.generate.
PROCESSOR_DEFAULTS: dict[str, Any] = {
    "repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
}


def lean_loop_can_drive(model: Any) -> bool:
    """Whether ``sample_continuations`` can run this model: decoder-only, with ``cache`` and
    ``position_ids`` arguments."""
    if getattr(model.config, "is_encoder_decoder", False):
        return False
    names = inspect.signature(model.forward).parameters
    return "cache" in names and "position_ids" in names


def lean_path_applies(model: Any) -> bool:
    """Whether ``generate_texts`` samples like ``model.generate`` on the lean loop: the loop can
    drive the model and its generation config asks for no extra logits processor."""
    if not lean_loop_can_drive(model):
        return False
    gc = getattr(model, "generation_config", None)
    return gc is None or all(
        getattr(gc, key, default) in (default, None) for key, default in PROCESSOR_DEFAULTS.items()
    )


def _sample_with_generate(
    loaded: LoadedModel,
    texts: list[str],
    params: GenerationParams,
    seed: int | None,
    cancel: threading.Event | None = None,
    on_step: Callable[[torch.Tensor, int], None] | None = None,
) -> list[list[int]]:
    """Every row through ``model.generate``: the general path, for any model transformers runs."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Cancelled(StoppingCriteria):  # checked after every token: stops all rows at once
        def __call__(self, input_ids, scores, **kwargs):
            if on_step is not None:
                new = input_ids[:, prompt_length:]
                on_step(new, new.shape[1])
            stop = cancel is not None and cancel.is_set()
            return torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )

    tok, model = loaded.tokenizer, loaded.model
    enc = tokenize(tok, texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc = enc.to(loaded.device)
    prompt_length = enc["input_ids"].shape[1]
    if seed is not None:
        torch.manual_seed(seed)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        if params.temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    # generate's prefill slices the last position as a strided view (slow on a CPU, see above)
    head = model.get_output_embeddings()
    hook = head.register_forward_pre_hook(_contiguous) if head is not None else None
    try:
        out = model.generate(
            **enc,
            max_new_tokens=params.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
            **sampling,
        )
    finally:
        if hook is not None:
            hook.remove()
    if cancel is not None and cancel.is_set():
        raise GenerationCancelled
    return out[:, enc["input_ids"].shape[1] :].tolist()  # (B, T_new)


def _contiguous(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.contiguous() if torch.is_tensor(a) else a for a in args)


def _sample_shared_prefill(
    loaded: LoadedModel,
    texts: list[str],
    params: GenerationParams,
    seed: int | None,
    cancel: threading.Event | None = None,
    on_step: Callable[[torch.Tensor, int], None] | None = None,
) -> list[list[int]]:
    """K rows per prompt through ``sample_continuations``, sampling like ``model.generate``
    (temperature, then the model's top-k, then top-p)."""
    tok, model, dev = loaded.tokenizer, loaded.model, loaded.device
    enc = tokenize(tok, texts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed if seed is not None else int(torch.randint(2**31, (1,))))
    return sample_continuations(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        k=params.per_prompt,
        max_new_tokens=params.max_new_tokens,
        temperature=params.temperature,
        top_k=_default_top_k(model),
        top_p=params.top_p,
        stop_ids=_stop_ids(loaded),
        pad_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
        generator=gen,
        cancel=cancel,
        on_step=on_step,
    )


def sample_continuations(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    k: int,
    max_new_tokens: int,
    temperature: float,
    top_k: int,
    top_p: float,
    stop_ids: set[int],
    pad_id: int,
    generator: torch.Generator,
    cancel: threading.Event | None = None,
    on_step: Callable[[torch.Tensor, int], None] | None = None,
) -> list[list[int]]:
    """K continuations of each left-padded prompt row: ``max_new_tokens`` ids per row, ``pad_id``
    after the row's first stop id. Rows ``i*K .. i*K+K-1`` continue prompt ``i``.

    One prefill per prompt, its KV cache repeated K times, then a decode loop in which finished
    rows leave the batch. ``top_k = 0`` and ``top_p = 1`` sample from the whole distribution at
    ``temperature`` (what online RL needs: its log-probs use that distribution). The model must
    take ``cache`` and ``position_ids`` (``lean_loop_can_drive``); a peft model's base model with
    its adapters in place does. ``on_step(tokens, t)`` sees the (B, max_new_tokens) ids after
    each of the first ``t`` tokens is written. Raises ``GenerationCancelled`` when ``cancel`` is set.
    """
    from transformers import DynamicCache  # here: importing core.generation stays cheap

    dev = input_ids.device
    mask = attention_mask  # (P, T) left-padded
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    extra = {}
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        # the last position's logits only, picked by an index tensor (a contiguous copy): the
        # int form slices a strided view, which CPU linear layers run slowly, bf16 most
        extra["logits_to_keep"] = torch.tensor([input_ids.shape[1] - 1], device=dev)
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        cache=cache,
        use_cache=True,
        **extra,
    )
    cache.batch_repeat_interleave(k)
    logits = out.logits[:, -1].repeat_interleave(k, dim=0)  # (B, V), B = P * K
    mask = mask.repeat_interleave(k, dim=0)
    position = positions[:, -1:].repeat_interleave(k, dim=0) + 1  # (B, 1)
    stop = torch.tensor(sorted(stop_ids), device=dev)
    tokens = torch.full((logits.shape[0], max_new_tokens), pad_id, dtype=torch.long, device=dev)
    rows = torch.arange(logits.shape[0], device=dev)  # which output row each batch row is
    for t in range(max_new_tokens):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled
        nxt = _pick(logits, temperature, top_k, top_p, generator)  # (b,)
        tokens[rows, t] = nxt
        if on_step is not None:
            on_step(tokens, t + 1)
        alive = ~torch.isin(nxt, stop)
        if t == max_new_tokens - 1 or not bool(alive.any()):
            break
        if not bool(alive.all()):  # finished rows leave the batch: no more compute for them
            keep = alive.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, nxt, mask, position = rows[keep], nxt[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        out = model(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=position,
            cache=cache,
            use_cache=True,
        )
        logits, position = out.logits[:, -1], position + 1
    return tokens.tolist()


def _default_top_k(model: Any) -> int:
    """The model's top_k, or the one ``model.generate`` falls back to (50) when it sets none."""
    from transformers import GenerationConfig

    top_k = getattr(getattr(model, "generation_config", None), "top_k", None)
    if top_k is None:
        top_k = GenerationConfig._get_default_generation_params().get("top_k", 0)
    return int(top_k or 0)


def _pick(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gen: torch.Generator
) -> torch.Tensor:
    """One token per row: greedy at temperature 0, else sampled from the top-k / top-p nucleus."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k <= 0 and top_p >= 1.0:  # the whole distribution: no sort needed
        return torch.multinomial(scores.softmax(dim=-1), 1, generator=gen).squeeze(-1)
    if 0 < top_k < scores.shape[-1]:
        values, index = torch.topk(scores, top_k, dim=-1)  # sorted, largest first
    else:
        values, index = torch.sort(scores, dim=-1, descending=True)
    probs = values.softmax(dim=-1)
    if top_p < 1.0:  # keep the smallest prefix whose mass reaches top_p (always the first token)
        probs = probs * ((probs.cumsum(dim=-1) - probs) < top_p)
    choice = torch.multinomial(probs, 1, generator=gen)  # multinomial renormalises
    return index.gather(-1, choice).squeeze(-1)


def _stop_ids(loaded: LoadedModel) -> set[int]:
    ids = {loaded.tokenizer.pad_token_id, loaded.tokenizer.eos_token_id}
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, list) else [eos])
    return {i for i in ids if i is not None}


def generate_samples(
    store: ProjectStore,
    loaded: LoadedModel,
    params: GenerationParams,
    *,
    limit: int | None = None,
    prompt_ids: list[int] | None = None,
    cancel: threading.Event | None = None,
    preview: Callable[[GenerationPreview], None] | None = None,
) -> Iterator[GenerationProgress]:
    """Generate K samples for each chosen prompt; yields progress after every batch. ``preview``
    receives each batch's responses as far as they are written (``generate_texts``)."""
    params.validate()
    ids = prompt_ids if prompt_ids is not None else pick_prompts(store, limit)
    per_batch = max(1, params.batch_size // params.per_prompt)
    recorded = {k: v for k, v in asdict(params).items() if k != "batch_size"}
    start, tokens, done = time.perf_counter(), 0, 0
    for b in range(0, len(ids), per_batch):
        if cancel is not None and cancel.is_set():
            return
        batch = ids[b : b + per_batch]
        # Every batch is seeded, and the seed is recorded, so any sample can be reproduced.
        seed = random.randrange(2**31) if params.seed is None else params.seed + b
        chats = [store.prompt_messages(p) for p in batch]
        show = None
        if preview is not None:

            def show(texts: list[list[str]], batch: list[int] = batch) -> None:
                preview(GenerationPreview(batch, texts))

        try:
            results = generate_texts(loaded, chats, params, seed, cancel, show)
        except GenerationCancelled:
            return
        rows = [
            {
                "prompt_id": pid,
                "text": text,
                "model": loaded.spec,
                "checkpoint_id": loaded.checkpoint_id,
                "params": {**recorded, "seed": seed, "dtype": str(loaded.dtype).split(".")[-1]},
                "n_tokens": n,
            }
            for pid, candidates in zip(batch, results, strict=True)
            for text, n in candidates
        ]
        new_ids = store.add_samples(rows)
        tokens += sum(r["n_tokens"] for r in rows)
        done += len(batch)
        yield GenerationProgress(done, len(ids), new_ids, tokens, time.perf_counter() - start)
