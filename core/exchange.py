"""Data leaving and joining a project: rating exports, checkpoint export, merging project files.

The rating exports live in core/export.py and the merge in core/merge.py; this module adds the
checkpoint export (a Hugging Face folder with a model card) and the `export` / `merge` commands
that main.py runs. Rules for all of it: docs/exports.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.export import ExportError, ExportProgress, ExportResult, export_ratings
from core.merge import MergeProgress, MergeReport, merge_projects
from core.store import ProjectStore

__all__ = [
    "CheckpointExport", "ExportError", "ExportProgress", "ExportResult", "MergeProgress",
    "MergeReport", "export_checkpoint", "export_command", "export_ratings", "merge_command",
    "merge_projects", "model_card",
]  # fmt: skip

# Files a training run keeps for resuming that a published model does not need.
_TRAINING_ONLY = ("optimizer", "scheduler", "rng_state", "trainer_state", "training_state",
                  "training_args", "checkpoint.json")  # fmt: skip
_DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass
class CheckpointExport:
    path: Path
    checkpoint_id: int
    kind: str  # policy | reward
    form: str  # full | adapter | merged
    notes: list[str]


# ---- checkpoint export ----------------------------------------------------------------------------
def export_checkpoint(
    store: ProjectStore, ref: str | int, out_dir: str | os.PathLike, merged: bool = False
) -> CheckpointExport:
    """Write checkpoint ``ref`` as a Hugging Face folder with tokenizer and a README model card.

    A full-weights checkpoint, or an adapter with ``merged=True``, loads with
    ``AutoModelForCausalLM.from_pretrained``; an adapter otherwise loads with
    ``PeftModel.from_pretrained`` over its base model. Reward checkpoints are copied as they are.
    The folder is built beside ``out_dir`` and renamed into place; an existing non-empty folder
    is never overwritten."""
    rec = store.checkpoint(ref)
    src = _checkpoint_folder(store, rec)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} already exists and is not empty; choose a new folder (-o DIR).")
    out.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if merged and rec["kind"] != "policy":
        notes.append("a reward checkpoint is exported as it is; --merged was ignored")
    if merged and not rec["adapter"]:
        notes.append("the checkpoint holds full weights already; --merged changed nothing")
    form = "merged" if merged and rec["adapter"] and rec["kind"] == "policy" else (
        "adapter" if rec["adapter"] else "full")  # fmt: skip
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if form == "merged":  # the base model (fp32, CPU) with the adapter merged in
            import torch

            from core.checkpoints import load_checkpoint_model

            model, _ = load_checkpoint_model(rec, store=store, dtype=torch.float32)
            model.save_pretrained(tmp)
            _copy_files(src, tmp, skip_adapter=True)
        else:
            _copy_files(src, tmp, skip_adapter=False)
        _ensure_tokenizer(store, rec, tmp, notes)
        if rec["kind"] == "policy":
            _ensure_generation_config(store, rec, tmp, notes)
        (tmp / "README.md").write_text(model_card(store, rec, form, src), encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CheckpointExport(out, rec["id"], rec["kind"], form, notes)


def _checkpoint_folder(store: ProjectStore, rec: dict[str, Any]) -> Path:
    """The checkpoint's folder, checked to exist and to match its recorded sha256."""
    from core.checkpoints import verify

    return verify(store, rec)


def _base_folder(store: ProjectStore, spec: str) -> str:
    """Where a base model spec's config and tokenizer can be read from (a folder or hub id)."""
    from core.models import default_model_dir, parse_spec

    parsed = parse_spec(spec)
    if parsed.kind == "default":
        return str(default_model_dir())
    if parsed.kind == "checkpoint":
        rec = store.checkpoint(parsed.value)
        folder = _checkpoint_folder(store, rec)
        return _base_folder(store, rec["base_model"]) if rec["adapter"] else str(folder)
    return parsed.value


def _copy_files(src: Path, dst: Path, *, skip_adapter: bool) -> None:
    def ignore(_folder: str, names: list[str]) -> set[str]:
        out = {n for n in names if n.startswith(".") or n.startswith(_TRAINING_ONLY)}
        if skip_adapter:
            out |= {n for n in names if n.startswith("adapter_") or n in _MODEL_FILES}
            out |= {n for n in names if (dst / n).exists()}  # merged weights and config win
        return out

    shutil.copytree(src, dst, ignore=ignore, dirs_exist_ok=True)


_MODEL_FILES = {"config.json", "generation_config.json", "model.safetensors",
                "model.safetensors.index.json"}  # fmt: skip


def _ensure_tokenizer(store: ProjectStore, rec: dict[str, Any], folder: Path, notes: list) -> None:
    if (folder / "tokenizer_config.json").exists() or (folder / "tokenizer.json").exists():
        return
    from transformers import AutoTokenizer

    base = _base_folder(store, rec["base_model"] or "default")
    try:
        AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    except (OSError, ValueError) as e:
        notes.append(f"no tokenizer in the checkpoint and none could be read from {base} ({e})")


def _ensure_generation_config(
    store: ProjectStore, rec: dict[str, Any], folder: Path, notes: list
) -> None:
    if (folder / "generation_config.json").exists():
        return
    from transformers import AutoConfig, GenerationConfig

    try:
        if (folder / "config.json").exists():
            config = GenerationConfig.from_model_config(AutoConfig.from_pretrained(folder))
        else:
            config = GenerationConfig.from_pretrained(_base_folder(store, rec["base_model"]))
        config.save_pretrained(folder)
    except (OSError, ValueError) as e:
        notes.append(f"no generation_config.json could be made ({e})")


# ---- the model card -------------------------------------------------------------------------------
def model_card(
    store: ProjectStore, rec: dict[str, Any], form: str, folder: Path | None = None
) -> str:
    """README.md for an exported checkpoint: what it is, how it was trained, how to load it."""
    run = _run(store, rec.get("run_id"))
    folder = folder or _checkpoint_folder(store, rec)
    from core.checkpoints import run_config

    config = run_config(folder) or _as_dict(_loads(run.get("config")))
    metrics = {
        **_final_metrics(store, rec),
        **_as_dict(rec.get("metrics")),
    }
    algo = run.get("algo") or config.get("algo") or "unknown"
    base = rec.get("base_model") or run.get("base_model") or "unknown"
    hub_base = _DEFAULT_HUB_ID if base == "default" else base
    is_hub = hub_base.count("/") == 1 and not hub_base.startswith((".", "/", "~"))
    reward = rec["kind"] == "reward"
    what = "a reward model" if reward else "a policy (causal language model)"
    front = ["---", f"library_name: {'peft' if form == 'adapter' else 'transformers'}"]
    if is_hub:
        front.append(f"base_model: {hub_base}")
    front += ["tags:", "- rlhf-studio", f"- {algo}", "- rlhf"]
    if not reward:
        front.append("pipeline_tag: text-generation")
    front.append("---")
    lines = [
        *front, "",
        f"# checkpoint:{rec['id']} — {what} trained with {algo.upper()} in RLHF Studio", "",
        f"- **Kind:** {rec['kind']}" + (" — it scores responses; it does not generate." if reward else ""),
        f"- **Form:** {_FORMS[form]}",
        f"- **Base model:** `{base}`" + (f" ({hub_base})" if hub_base != base else ""),
        f"- **Algorithm:** {algo}",
        f"- **Step:** {rec['step']}",
        f"- **Checkpoint saved:** {rec['created_at']}",
        f"- **Exported:** {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- **Checkpoint uuid:** {rec['uuid']}" + (f", run {run['uuid']}" if run else ""),
        f"- **sha256:** {rec.get('sha256') or 'n/a'}", "",
        "## Training data", "", *_data_lines(store, run), "",
        "## Hyper-parameters", "", *_table(config, "setting"), "",
        "## Final metrics", "", *_table(metrics or {}, "metric"), "",
        "## How to load", "", "```python", *_load_snippet(form, reward, hub_base), "```", "",
    ]  # fmt: skip
    if reward:
        lines += _pooling_lines(config.get("pooling") or "last", form)
    return "\n".join(lines)


def _pooling_lines(pooling: str, form: str) -> list[str]:
    """How a reward model's score is computed (``core.trainers.reward_model``, pooling)."""
    if pooling != "mean":
        return ["## How it scores", "", "The score of a prompt and response is the model's output "
                "on the chat-formatted prompt followed by the response (no end-of-turn token): "
                "the head on the last token, as `transformers` computes it.", ""]  # fmt: skip
    lines = ["## How it scores", "", "This reward model was trained with **mean pooling**: the "
             "score is its head applied to the mean of the *response* tokens' last hidden states "
             "(prompt chat-formatted, response appended, no end-of-turn token). "
             "`AutoModelForSequenceClassification`'s own output reads the last token instead, so "
             "compute the score like this:", ""]  # fmt: skip
    if form == "adapter":
        return lines[:-1] + [" RLHF Studio does this in `core.checkpoints.load_reward_model`.", ""]
    return lines + [
        "```python", "import torch", "",
        "def reward(model, tokenizer, prompt, response):",
        '    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],',
        "                                         tokenize=False, add_generation_prompt=True)",
        '    p = tokenizer(text, add_special_tokens=False)["input_ids"]',
        '    r = tokenizer(response, add_special_tokens=False)["input_ids"]',
        "    with torch.no_grad():",
        "        body = getattr(model, model.base_model_prefix)",
        "        hidden = body(torch.tensor([p + r])).last_hidden_state[0]",
        "        return model.score(hidden[len(p):].mean(0)).item()",
        "```", "",
    ]  # fmt: skip


_FORMS = {
    "full": "full weights",
    "adapter": "a LoRA adapter (load it over the base model with peft)",
    "merged": "full weights (the LoRA adapter merged into the base model)",
}


def _run(store: ProjectStore, run_id: int | None) -> dict[str, Any]:
    if run_id is None:
        return {}
    row = store.conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
    if row is None:
        return {}
    cols = [d[0] for d in store.conn.execute("SELECT * FROM runs LIMIT 0").description]
    return dict(zip(cols, row, strict=True))


def _data_lines(store: ProjectStore, run: dict[str, Any]) -> list[str]:
    ids = run.get("rating_ids")
    if not ids:
        return ["No record of the ratings this checkpoint was trained on."]
    rows = store.conn.execute(
        "SELECT kind, COUNT(*), COUNT(DISTINCT annotator), COUNT(DISTINCT prompt_id) FROM ratings "
        "WHERE id IN (SELECT value FROM json_each(?)) GROUP BY kind ORDER BY kind",
        (ids,),
    ).fetchall()
    totals = store.conn.execute(
        "SELECT COUNT(*), COUNT(DISTINCT annotator), COUNT(DISTINCT prompt_id) FROM ratings "
        "WHERE id IN (SELECT value FROM json_each(?))",
        (ids,),
    ).fetchone()
    n, a, p = totals
    out = [f"{_n(n, 'rating')} by {_n(a, 'annotator')} on {_n(p, 'prompt')}:", ""]
    out += [f"- {kind}: {_n(n, 'rating')} ({_n(a, 'annotator')}, {_n(p, 'prompt')})"
            for kind, n, a, p in rows]  # fmt: skip
    return out


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _final_metrics(store: ProjectStore, rec: dict[str, Any]) -> dict[str, float]:
    if rec.get("run_id") is None:
        return {}
    rows = store.conn.execute(
        "SELECT name, value FROM metrics WHERE run_id = ?1 AND step = (SELECT MAX(step) FROM "
        "metrics WHERE run_id = ?1 AND step <= ?2) ORDER BY name",
        (rec["run_id"], rec["step"]),
    )
    return dict(rows.fetchall())


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


# ---- the commands main.py runs --------------------------------------------------------------------
def _open(args: argparse.Namespace, *, create: bool) -> ProjectStore:
    from core.models import default_project_path

    return ProjectStore(Path(args.db) if args.db else default_project_path(), create=create)


def export_command(args: argparse.Namespace) -> int:
    """`export ratings ...` and `export checkpoint ...`; returns the exit code."""
    with _open(args, create=False) as store:
        if args.export_what == "checkpoint":
            res = export_checkpoint(store, args.checkpoint, args.output, merged=args.merged)
            for note in res.notes:
                print(f"note: {note}", file=sys.stderr)
            print(f"checkpoint:{res.checkpoint_id} ({res.kind}, {res.form}) exported to {res.path}")
            return 0
        from tqdm import tqdm

        bars: list[Any] = []

        def show(p: ExportProgress) -> None:
            if not bars:
                bars.append(
                    tqdm(unit="row", desc=f"export {args.format}", file=sys.stderr, leave=False)
                )
            bars[0].total = p.total or None
            bars[0].update(p.done - bars[0].n)

        try:
            res = export_ratings(
                store, args.output, args.format, anonymize=args.anonymize,
                include_superseded=args.include_superseded, annotators=args.annotators,
                min_agreement=args.min_agreement, min_score=getattr(args, "min_score", None),
                progress=show,
            )  # fmt: skip
        finally:
            for bar in bars:
                bar.close()
    if res.rows == 0:
        print(f"note: no ratings make {res.format} rows yet; see docs/exports.md for which "
              "ratings each format uses.", file=sys.stderr)  # fmt: skip
    form = " (conversational)" if res.conversational else ""
    print(f"{res.rows} rows written to {res.path} as {res.format}{form} in {res.seconds:.1f} s.")
    return 0


def merge_command(args: argparse.Namespace) -> int:
    """`merge OTHER.db ...`: prints what each file added; returns the exit code."""
    with _open(args, create=True) as store:
        report = merge_projects(store, args.others)
    print(report.summary())
    print(f"merged into {store.path} in {report.seconds:.1f} s.")
    return 0
