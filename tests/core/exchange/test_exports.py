"""Exports: raw rows, TRL-ready training files built by core.data, anonymisation, checkpoints."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
from exchange_checks import generates_a_token, save_checkpoint

from core import data
from core.exchange import ExportError, export_checkpoint, export_ratings
from core.exchange.ratings import iter_export_ratings
from core.exchange.writers import RAW_COLUMNS, RAW_TAIL
from core.store import ProjectStore

CHAT_PROMPT = 5  # project_with_prompts: prompt 5 is a chat (system + user)


def add_samples(store: ProjectStore, prompt_id: int, n: int, model: str = "default") -> list[int]:
    rows = [
        {"prompt_id": prompt_id, "text": f"p{prompt_id} answer {i} by {model}", "model": model}
        for i in range(n)
    ]
    return store.add_samples(rows)


def pairwise(store: ProjectStore, who: str, a: int, b: int, choice: str, **kw) -> int:
    winner = {"a": a, "b": b}.get(choice)
    value = {"choice": choice, "winner": winner}
    return store.add_rating(annotator=who, kind="pairwise", sample_ids=[a, b], value=value, **kw)


def rated_project(store: ProjectStore, *, chat: bool = False) -> dict[str, list[int]]:
    """Prompts 1–3 (and the chat prompt 5) with samples and every kind of rating."""
    s = {p: add_samples(store, p, 4) for p in (1, 2, 3)}
    pairwise(store, "alice", s[1][0], s[1][1], "a", seconds=4.0, comment="clearer")
    pairwise(store, "bob", s[1][0], s[1][1], "a", seconds=6.0)
    pairwise(store, "alice", s[2][0], s[2][1], "b", seconds=3.0)
    pairwise(store, "alice", s[2][2], s[2][3], "tie", seconds=3.0)
    store.add_rating(  # shown in descending id order: exports must keep the order shown
        annotator="alice", kind="rank", sample_ids=s[3][2::-1], value={"order": s[3][:3]}
    )
    for i, v in enumerate((1.0, 0.25)):
        store.add_rating(
            annotator="bob",
            kind="score",
            sample_ids=[s[2][i]],
            value={"scores": {"overall": v, "fluency": 0.5}},
            seconds=5.0,
        )
    store.add_rating(annotator="carol", kind="thumbs", sample_ids=[s[1][2]], value={"up": True})
    store.add_rating(annotator="carol", kind="thumbs", sample_ids=[s[1][3]], value={"up": False})
    (rewrite,) = store.add_samples(
        [{"prompt_id": 1, "text": "a better one", "model": "human:dora"}]
    )
    store.add_rating(
        annotator="dora",
        kind="rewrite",
        sample_ids=[s[1][3], rewrite],
        value={"original": s[1][3], "rewrite": rewrite},
    )
    s["rewrite"] = [rewrite]
    if chat:
        s[CHAT_PROMPT] = add_samples(store, CHAT_PROMPT, 2)
        pairwise(store, "alice", *s[CHAT_PROMPT], "b")
    return s


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- training formats -------------------------------------------------------------------------------
def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_preference_export_loads_with_datasets_and_matches_core_data(
    project_with_prompts, tmp_path
):
    """Conversational by default: the samples were generated through the chat template, and TRL
    applies it to conversational rows only (a plain prompt is one user turn)."""
    datasets = pytest.importorskip("datasets")
    store = project_with_prompts
    s = rated_project(store)
    out = tmp_path / "pairs.jsonl"
    res = export_ratings(store, out, "preference")
    pairs = data.preference_pairs(store, aggregate=True)
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.column_names == ["prompt", "chosen", "rejected"]
    assert ds.num_rows == len(pairs) == res.rows > 0
    assert res.conversational
    rows = read_jsonl(out)
    p = pairs[0]
    texts = dict(store.conn.execute("SELECT id, text FROM samples"))
    assert rows[0] == {
        "prompt": user(store.prompt(p.prompt_id)["text"]),
        "chosen": assistant(texts[p.chosen_id]),
        "rejected": assistant(texts[p.rejected_id]),
    }
    assert {
        "prompt": user("Write a short poem about the sea."),
        "chosen": assistant("a better one"),
        "rejected": assistant(texts[s[1][3]]),
    } in rows

    res = export_ratings(store, out, "preference", plain=True)
    assert not res.conversational
    assert read_jsonl(out) == [
        {"prompt": r["prompt"][0]["content"], **{k: r[k][0]["content"] for k in r if k != "prompt"}}
        for r in rows
    ]


def test_preference_export_is_conversational_when_a_prompt_is_a_chat(
    project_with_prompts, tmp_path
):
    datasets = pytest.importorskip("datasets")
    store = project_with_prompts
    s = rated_project(store, chat=True)
    out = tmp_path / "pairs.jsonl"
    res = export_ratings(store, out, "preference", plain=True)  # a string cannot hold a chat
    assert res.conversational
    rows = read_jsonl(out)
    chat = [r for r in rows if r["prompt"][0]["role"] == "system"]
    assert chat == [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello."},
            ],
            "chosen": [{"role": "assistant", "content": "p5 answer 1 by default"}],
            "rejected": [{"role": "assistant", "content": "p5 answer 0 by default"}],
        }
    ]
    plain = [r for r in rows if r is not chat[0] and r["prompt"][0]["role"] == "user"]
    assert plain and all(len(r["prompt"]) == 1 for r in plain)  # a plain prompt is one user turn
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == len(data.preference_pairs(store, aggregate=True))
    assert s[CHAT_PROMPT]


def test_min_agreement_drops_contested_pairs_like_core_data(project_with_prompts, tmp_path):
    store = project_with_prompts
    a, b = add_samples(store, 1, 2)
    for who, choice in (("alice", "a"), ("bob", "b"), ("carol", "a")):
        pairwise(store, who, a, b, choice)  # agreement 2/3
    out = tmp_path / "p.jsonl"
    assert export_ratings(store, out, "preference", min_agreement=0.6).rows == 1
    assert export_ratings(store, out, "preference", min_agreement=0.7).rows == 0
    assert len(data.preference_pairs(store, aggregate=True, min_agreement=0.7)) == 0
    assert export_ratings(store, out, "preference", annotators=["alice", "carol"]).rows == 1


def test_unpaired_export_is_kto_format(project_with_prompts, tmp_path):
    datasets = pytest.importorskip("datasets")
    store = project_with_prompts
    rated_project(store)
    out = tmp_path / "kto.jsonl"
    res = export_ratings(store, out, "unpaired")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.column_names == ["prompt", "completion", "label"]
    assert ds.num_rows == res.rows == len(data.unpaired_examples(store, aggregate=True))
    assert set(ds["label"]) == {True, False}
    assert all(isinstance(x, bool) for x in ds["label"])
    row = read_jsonl(out)[0]
    assert (row["prompt"][0]["role"], row["completion"][0]["role"]) == ("user", "assistant")
    export_ratings(store, out, "unpaired", plain=True)
    assert isinstance(read_jsonl(out)[0]["completion"], str)


def test_sft_export_prompt_completion_or_messages(project_with_prompts, tmp_path):
    store = project_with_prompts
    rated_project(store)
    out = tmp_path / "sft.jsonl"
    export_ratings(store, out, "sft")
    assert read_jsonl(out) == [
        {"messages": user("Write a short poem about the sea.") + assistant("a better one")}
    ]
    export_ratings(store, out, "sft", plain=True)
    assert read_jsonl(out) == [
        {"prompt": "Write a short poem about the sea.", "completion": "a better one"}
    ]
    export_ratings(store, out, "sft", min_score=0.9)  # also bob's top-scored sample
    assert len(read_jsonl(out)) == 2
    (original,) = add_samples(store, CHAT_PROMPT, 1)
    (rewrite,) = store.add_samples([{"prompt_id": CHAT_PROMPT, "text": "Hi.", "model": "human:x"}])
    store.add_rating(
        annotator="x",
        kind="rewrite",
        sample_ids=[original, rewrite],
        value={"original": original, "rewrite": rewrite},
    )
    export_ratings(store, out, "sft", plain=True)
    rows = read_jsonl(out)
    assert all(list(r) == ["messages"] for r in rows)
    assert rows[-1]["messages"][-1] == {"role": "assistant", "content": "Hi."}
    assert rows[-1]["messages"][0] == {"role": "system", "content": "Be brief."}


# ---- raw formats ------------------------------------------------------------------------------------
def raw_rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_raw_exports_hold_every_field(project_with_prompts, tmp_path, fmt):
    store = project_with_prompts
    s = rated_project(store)
    out = tmp_path / f"ratings.{fmt}"
    res = export_ratings(store, out, fmt)
    rows = raw_rows(out, fmt)
    n = store.count("ratings")
    assert res.rows == len(rows) == n
    columns = [*RAW_COLUMNS, "score_overall", "score_fluency", *RAW_TAIL]
    assert list(rows[0]) == columns

    def decode(v):  # csv cells and parquet's value column hold JSON text
        return json.loads(v) if isinstance(v, str) and v and v[0] in "[{" else v

    first = {k: decode(v) for k, v in rows[0].items()}
    assert first["annotator"] == "alice" and first["kind"] == "pairwise"
    assert first["prompt"] == "Write a short poem about the sea."
    assert first["sample_ids"] == [s[1][0], s[1][1]]
    uuids = dict(store.conn.execute("SELECT id, uuid FROM samples"))
    assert first["responses"] == [
        {
            "sample_id": i,
            "sample_uuid": uuids[i],
            "text": f"p1 answer {n} by default",
            "model": "default",
            "checkpoint_id": None,
        }
        for n, i in enumerate(s[1][:2])
    ]
    assert first["value"] == {"choice": "a", "winner": s[1][0]}
    assert first["comment"] == "clearer"
    assert float(first["seconds"]) == 4.0
    assert first["superseded"] in (False, "false")
    assert first["created_at"]
    scored = [r for r in rows if r["kind"] == "score"]
    assert sorted(float(r["score_overall"]) for r in scored) == [0.25, 1.0]
    rewrite = next(r for r in rows if r["kind"] == "rewrite")
    assert decode(rewrite["responses"])[1]["model"] == "human:dora"
    texts = dict(store.conn.execute("SELECT id, text FROM samples"))
    for r in rows:
        shown = decode(r["responses"])
        assert [x["text"] for x in shown] == [texts[i] for i in decode(r["sample_ids"])]
        assert [x["sample_id"] for x in shown] == decode(r["sample_ids"])
    rank = next(r for r in rows if r["kind"] == "rank")
    assert decode(rank["sample_ids"]) == s[3][2::-1]


def test_raw_parquet_messages_are_typed(project_with_prompts, tmp_path):
    import pyarrow.parquet as pq

    store = project_with_prompts
    rated_project(store, chat=True)
    out = tmp_path / "r.parquet"
    export_ratings(store, out, "parquet")
    table = pq.read_table(out)
    chat = [m for m in table.column("prompt_messages").to_pylist() if m]
    assert chat[0] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hello."},
    ]
    assert str(table.schema.field("sample_ids").type) == "list<element: int64>"


def test_anonymize_is_stable_and_hides_names(project_with_prompts, tmp_path):
    store = project_with_prompts
    rated_project(store)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    export_ratings(store, a, "jsonl", anonymize=True)
    salt = store.get_meta("anonymize_salt")
    export_ratings(store, b, "jsonl", anonymize=True)
    assert salt and store.get_meta("anonymize_salt") == salt
    text = a.read_text(encoding="utf-8")
    assert text == b.read_text(encoding="utf-8")
    for name in ("alice", "bob", "carol", "dora"):
        assert name not in text
    rows = read_jsonl(a)
    codes = {r["annotator"] for r in rows}
    assert len(codes) == 4 and all(c.startswith("annotator-") for c in codes)
    rewrite = next(r for r in rows if r["kind"] == "rewrite")
    assert rewrite["responses"][1]["model"] == "human:" + rewrite["annotator"]


def test_include_superseded_and_annotator_filter(project_with_prompts, tmp_path):
    store = project_with_prompts
    rated_project(store)
    undone = store.conn.execute("SELECT MIN(id) FROM ratings").fetchone()[0]
    store.set_superseded(undone)
    out = tmp_path / "r.jsonl"
    export_ratings(store, out, "jsonl")
    rows = read_jsonl(out)
    assert undone not in {r["rating_id"] for r in rows}
    export_ratings(store, out, "jsonl", include_superseded=True)
    rows = read_jsonl(out)
    assert len(rows) == store.count("ratings")
    assert next(r for r in rows if r["rating_id"] == undone)["superseded"] is True
    export_ratings(store, out, "jsonl", annotators=["bob"])
    assert {r["annotator"] for r in read_jsonl(out)} == {"bob"}
    with pytest.raises(ExportError, match="no ratings by zed"):
        export_ratings(store, out, "jsonl", annotators=["zed"])


@pytest.mark.parametrize(
    ("fmt", "options", "message"),
    [
        ("jsonl", {"min_agreement": 0.5}, "--min-agreement applies to"),
        ("preference", {"include_superseded": True}, "--include-superseded applies to"),
        ("preference", {"min_agreement": 1.5}, r"fraction in \[0, 1\]"),
        ("csv", {"plain": True}, "--plain applies to preference, unpaired, sft"),
        ("xml", {}, "not one of"),
    ],
)
def test_bad_options_are_refused_before_writing(
    project_with_prompts, tmp_path, fmt, options, message
):
    out = tmp_path / "out.jsonl"
    with pytest.raises(ExportError, match=message):
        export_ratings(project_with_prompts, out, fmt, **options)
    assert not out.exists()
    with pytest.raises(ExportError, match="is a folder"):
        export_ratings(project_with_prompts, tmp_path, "jsonl")


def test_progress_streams_and_a_failed_or_cancelled_export_leaves_the_old_file(
    project_with_prompts, tmp_path, monkeypatch
):
    from core.exchange import ratings as export
    from core.exchange import writers

    store = project_with_prompts
    rated_project(store)
    monkeypatch.setattr(export, "_BATCH", 3)
    out = tmp_path / "r.jsonl"
    out.write_text("old\n")
    seen = []
    res = export_ratings(store, out, "jsonl", progress=seen.append)
    n = store.count("ratings")
    assert [p.done for p in seen] == [*range(3, n, 3), n] and seen[-1].total == n
    assert len(read_jsonl(out)) == n == res.rows

    out.write_text("old\n")
    gen = iter_export_ratings(store, out, "csv")
    next(gen)
    gen.close()  # what the GUI worker does on cancel
    cancel = threading.Event()
    cancel.set()
    res = export_ratings(store, out, "parquet", cancel=cancel)
    assert res.cancelled
    monkeypatch.setattr(writers.LineWriter, "write", lambda *a: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        export_ratings(store, out, "jsonl")
    assert out.read_text() == "old\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_export_command_runs_from_main(project_with_prompts, tmp_path, capsys):
    import main

    store = project_with_prompts
    rated_project(store)
    out = tmp_path / "pairs.jsonl"
    db = str(store.path)
    args = ["--db", db, "export", "ratings", "--format", "preference", "-o", str(out)]
    assert main.main(args) == 0
    assert "as preference (conversational)" in capsys.readouterr().out
    assert main.main([*args, "--plain"]) == 0
    assert "as preference (plain strings)" in capsys.readouterr().out
    assert isinstance(read_jsonl(out)[0]["prompt"], str)
    args = ["--db", db, "export", "ratings", "--format", "jsonl", "-o", str(out)]
    assert main.main([*args, "--annotator", "nobody"]) == 2
    assert "no ratings by nobody" in capsys.readouterr().err


# ---- TRL takes the file unchanged --------------------------------------------------------------------
def trl_dpo(tmp_path, model_dir, dataset_path, max_steps=1):
    """TRL's DPOTrainer on a file we exported: its train_dataset is the data tokenized its way."""
    datasets = pytest.importorskip("datasets")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds = datasets.load_dataset("json", data_files=str(dataset_path), split="train")
    config = DPOConfig(
        output_dir=str(tmp_path / "trl"),
        max_steps=max_steps,
        per_device_train_batch_size=2,
        max_length=64,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return DPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tokenizer)


@pytest.mark.parametrize(
    ("plain", "chat"), [(True, False), (False, True)], ids=["plain strings", "conversational"]
)
def test_exported_pairs_train_one_trl_dpo_step(
    project_with_prompts, tmp_path, tiny_model_dir, plain, chat
):
    pytest.importorskip("trl")
    store = project_with_prompts
    rated_project(store, chat=chat)
    out = tmp_path / "pairs.jsonl"
    assert export_ratings(store, out, "preference", plain=plain).conversational == (not plain)
    trainer = trl_dpo(tmp_path, tiny_model_dir, out)
    result = trainer.train()
    assert result.global_step == 1
    assert any("loss" in log for log in trainer.state.log_history)


def test_trl_dpo_sees_the_token_ids_our_dpo_trains_on(
    project_with_prompts, tmp_path, tiny_model_dir
):
    """A plain-prompt project's preference export, tokenized by TRL's DPOTrainer, gives the
    prompt, chosen and rejected ids core/training/dpo.py trains on (pair_seqs): the prompt through
    the chat template, the response, the end-of-turn token. TRL also keeps what the template writes
    after that token (a newline here), which generation never produces; nothing else differs.
    With --plain, TRL sees prompts without the template: the mismatch the default avoids."""
    pytest.importorskip("trl")
    from types import SimpleNamespace

    from core.models import load_tokenizer
    from core.training.objective import pair_seqs

    store = project_with_prompts
    rated_project(store)  # plain prompts only
    out = tmp_path / "pairs.jsonl"
    export_ratings(store, out, "preference")
    trl_rows = trl_dpo(tmp_path, tiny_model_dir, out).train_dataset
    tok = load_tokenizer(str(tiny_model_dir))
    ctx = SimpleNamespace(store=store, tokenizer=tok, config=SimpleNamespace(max_length=1024))
    ours = pair_seqs(ctx, data.preference_pairs(store, aggregate=True), eos=True)
    turn = tok.apply_chat_template(user("x") + assistant("MARK"), tokenize=False)
    after_eos = turn.split("MARK" + tok.eos_token, 1)[1]
    assert after_eos == "\n"
    tail = tok(after_eos, add_special_tokens=False)["input_ids"]
    assert len(trl_rows) == len(ours) >= 5
    for row, (chosen, rejected) in zip(trl_rows, ours, strict=True):
        assert row["prompt_ids"] == chosen.prompt == rejected.prompt
        assert row["chosen_ids"] == chosen.completion + tail
        assert row["rejected_ids"] == rejected.completion + tail
        assert chosen.completion[-1] == tok.eos_token_id

    export_ratings(store, out, "preference", plain=True)
    plain_rows = trl_dpo(tmp_path, tiny_model_dir, out).train_dataset
    assert all(
        row["prompt_ids"] != chosen.prompt
        for row, (chosen, _) in zip(plain_rows, ours, strict=True)
    )


# ---- checkpoints ------------------------------------------------------------------------------------
def test_full_checkpoint_export_loads_and_generates(project_with_prompts, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    store = project_with_prompts
    rated_project(store)
    cid = save_checkpoint(store, tmp_path, tiny_model_dir, drop=["generation_config.json"])
    out = tmp_path / "export" / "model"
    res = export_checkpoint(store, "checkpoint:latest", out)
    assert res.checkpoint_id == cid and res.form == "full" and res.path == out
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= names
    assert "tokenizer_config.json" in names and "optimizer.safetensors" not in names
    assert "checkpoint.json" not in names and "reference_logps.safetensors" not in names
    generates_a_token(AutoModelForCausalLM.from_pretrained(out), out)
    card = (out / "README.md").read_text(encoding="utf-8")
    for text in (
        "DPO",
        str(tiny_model_dir),
        "| lr | 3e-05 |",
        "| beta | 0.1 |",
        "| loss | 0.42 |",
        "| rewards/accuracies | 0.75 |",
        "ratings by",
        "pairwise",
        "**Step:** 10",
        "Exported",
        "library_name: transformers",
    ):
        assert text in card, text
    with pytest.raises(ExportError, match="not empty"):
        export_checkpoint(store, cid, out)


def test_adapter_checkpoint_exports_as_adapter_or_merged(
    project_with_prompts, tmp_path, tiny_model_dir
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    store = project_with_prompts
    cid = save_checkpoint(store, tmp_path, tiny_model_dir, adapter=True)
    adapter_dir, merged_dir = tmp_path / "adapter", tmp_path / "merged"
    assert export_checkpoint(store, cid, adapter_dir).form == "adapter"
    assert (adapter_dir / "adapter_config.json").exists()
    assert "library_name: peft" in (adapter_dir / "README.md").read_text(encoding="utf-8")
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), adapter_dir
    )
    generates_a_token(peft_model, adapter_dir)

    assert export_checkpoint(store, f"checkpoint:{cid}", merged_dir, merged=True).form == "merged"
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    generates_a_token(merged, merged_dir)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, base, atol=1e-4)  # the adapter really was merged in


def test_reward_checkpoint_exports_as_it_is_with_a_reward_card(
    project_with_prompts, tmp_path, tiny_model_dir
):
    from transformers import AutoModelForSequenceClassification

    store = project_with_prompts
    cid = save_checkpoint(store, tmp_path, tiny_model_dir, kind="reward")
    res = export_checkpoint(store, cid, tmp_path / "rm", merged=True)
    assert res.kind == "reward" and res.notes
    card = (tmp_path / "rm" / "README.md").read_text(encoding="utf-8")
    assert "reward model" in card and "pipeline_tag: text-generation" not in card
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm")
    assert model.config.num_labels == 1


def test_checkpoint_errors_name_what_to_do(project_with_prompts, tmp_path, tiny_model_dir):
    from core.errors import UserError
    from core.store import ProjectError

    store = project_with_prompts
    with pytest.raises(ProjectError, match="no policy checkpoint yet"):
        export_checkpoint(store, "checkpoint:latest", tmp_path / "x")
    cid = store.add_checkpoint(
        run_id=None,
        step=1,
        kind="policy",
        path=str(tmp_path / "gone"),
        sha256="",
        base_model="default",
        adapter=False,
    )
    with pytest.raises(UserError, match="is missing"):
        export_checkpoint(store, cid, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    good = save_checkpoint(store, tmp_path, tiny_model_dir)
    weights = Path(store.checkpoint(good)["path"]) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"damaged!")
    with pytest.raises(UserError, match="does not match its recorded sha256"):
        export_checkpoint(store, good, tmp_path / "x")
    assert not (tmp_path / "x").exists()
