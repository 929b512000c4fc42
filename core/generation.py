"""K candidate responses per prompt, batched, written to the project file as samples.

``generate_samples`` is a generator: it yields a ``GenerationProgress`` after each batch and checks
the cancel flag between batches, so a caller (the CLI's tqdm bar, or gui/workers.py) shows progress
and can stop it. Samples of one prompt are written in one transaction: a cancelled run never leaves
half of a prompt's candidates behind.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.errors import UserError
from core.models import LoadedModel, format_prompt
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


def pick_prompts(store: ProjectStore, limit: int | None = None) -> list[int]:
    """Prompts with the fewest samples first (then oldest), so repeated runs cover the set."""
    sql = (
        "SELECT p.id FROM prompts p LEFT JOIN samples s ON s.prompt_id = p.id "
        "AND s.model NOT LIKE 'human:%' GROUP BY p.id ORDER BY COUNT(s.id), p.id"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [r[0] for r in store.conn.execute(sql)]


@torch.inference_mode()
def generate_texts(
    loaded: LoadedModel,
    prompts: list[list[dict[str, str]]],
    params: GenerationParams,
    seed: int | None = None,
) -> list[list[tuple[str, int]]]:
    """K sampled (text, n_tokens) per prompt for a list of chat prompts, in one batched call."""
    tok, model = loaded.tokenizer, loaded.model
    k = params.per_prompt
    texts = [format_prompt(tok, m) for m in prompts for _ in range(k)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(loaded.device)
    if seed is not None:
        torch.manual_seed(seed)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
        if params.temperature > 0
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    out = model.generate(
        **enc, max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id, **sampling
    )
    new = out[:, enc["input_ids"].shape[1] :]  # (B, T_new)
    stop_ids = _stop_ids(loaded)
    results: list[list[tuple[str, int]]] = [[] for _ in prompts]
    for row, ids in enumerate(new.tolist()):
        n = len(ids)
        for i, t in enumerate(ids):
            if t in stop_ids:
                n = i
                break
        text = tok.decode(ids[:n], skip_special_tokens=True).strip()
        results[row // k].append((text, n))
    return results


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
) -> Iterator[GenerationProgress]:
    """Generate K samples for each chosen prompt; yields progress after every batch."""
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
        results = generate_texts(loaded, [store.prompt_messages(p) for p in batch], params, seed)
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
