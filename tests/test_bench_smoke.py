"""Every benchmark script runs in its --smoke mode on the tiny model, so none of them can rot.

Benchmarks are not tests: nothing here checks a time or a target. Each script must finish and
write a result with its figures; the report must render from those results.
"""

from __future__ import annotations

import importlib
import json

import pytest

SCRIPTS = (
    "bench.gen_speed",
    "bench.gen_whole",
    "bench.store_speed",
    "bench.dpo_vs_trl",
    "bench.dpo_whole",
    "bench.cuda",
    "bench.memory",
    "bench.cold_start",
    "bench.latency",
    "bench.diagnostics",
    "bench.learning.run",
)


@pytest.fixture(scope="module")
def smoke_results():
    return {}


@pytest.mark.parametrize("module", SCRIPTS)
def test_bench_script_runs(module, tiny_model_dir, tmp_path, smoke_results):
    script = importlib.import_module(module)
    out = tmp_path / "result.json"
    argv = ["--smoke", "--model", str(tiny_model_dir), "--out", str(out)]
    script.main([*argv, "--workdir", str(tmp_path / "work")])
    result = json.loads(out.read_text())
    if module == "bench.learning.run":
        _check_learning_project(tmp_path / "work" / "all.db", result)
    assert result["mode"] == "smoke" and result["machine"]["cores"] and result["commit"]
    assert result["figures"], f"{module} reported no figures"
    for fig in result["figures"]:
        assert fig["status"] in ("pass", "short", "info", "missing"), fig
    smoke_results[result["name"]] = result


def _check_learning_project(db, result):
    """The smoke run trained on train prompts only and judged dev prompts, over two seeds, and
    reported each policy's arena win rate against the base model."""
    from bench.learning.prompt_sets import split_of
    from core.store import ProjectStore

    with ProjectStore(db) as store:
        for split, wanted in (("train", "train"), ("eval", "dev")):
            texts = [store.prompt(pid)["text"] for pid in store.prompt_ids(split)]
            assert texts and {split_of(t) for t in texts} == {wanted}
        assert {r["annotator"] for r in store.ratings()} >= {
            "text_hash",
            "judge:bench.learning.raters:text_hash",
        }
    seeds = [row for row in result["details"]["tables"][0]["rows"] if "gain / SE" in row]
    assert {row["seed"] for row in seeds} == {0, 1}
    assert all(0 <= float(row["win rate vs base (95% CI)"].split()[0]) <= 1 for row in seeds)


def test_report_renders_every_result(smoke_results, tmp_path):
    from bench import report

    if len(smoke_results) < len(SCRIPTS):
        pytest.skip("runs after the scripts (some did not run)")
    text = report.render(
        {"generated": "now", "benches": smoke_results}, docs_dir=tmp_path.resolve()
    )
    assert "## Summary" in text and "## Machine" in text
    for result in smoke_results.values():
        assert f"## {result['title']}" in text
        for fig in result["figures"]:
            assert fig["label"] in text


def test_a_re_measurement_is_kept_beside_the_first(tmp_path):
    script = importlib.import_module("bench.store_speed")
    out = tmp_path / "again.json"
    script.main(
        [
            "--smoke",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--again",
            "after a fix",
        ]
    )
    result = json.loads(out.read_text())
    assert result["name"] == "store_speed_again"
    assert result["title"].endswith(", re-measured: after a fix")


def test_suite_runner_rejects_unknown_scripts(capsys):
    from bench import run

    with pytest.raises(SystemExit):
        run.main(["--only", "no_such_benchmark"])
    assert "unknown script" in capsys.readouterr().err


@pytest.mark.parametrize("added", [[], ["one.json"]])
def test_add_measures_nothing_even_with_no_file(added, monkeypatch, tmp_path):
    """`bench.run --add` adds result files and renders the report again; with no file it used to
    start the whole suite (about 30 hours)."""
    from bench import run as suite

    def measured(name, *rest):
        raise AssertionError(f"--add ran {name}")

    monkeypatch.setattr(suite, "OUT", tmp_path)
    monkeypatch.setattr(suite, "run_script", measured)
    (tmp_path / "quick").mkdir()
    old = {"name": "old", "title": "Old", "started": "2026-12-01T10:00", "figures": []}
    (tmp_path / "quick" / "results.json").write_text(json.dumps({"benches": {"old": old}}))
    new = {**old, "name": "one", "title": "One"}
    (tmp_path / "one.json").write_text(json.dumps(new))
    suite.main(["--quick", "--add", *[str(tmp_path / f) for f in added]])
    kept = json.loads((tmp_path / "quick" / "results.json").read_text())["benches"]
    assert set(kept) == {"old", *(["one"] if added else [])}
    assert "## Old" in (tmp_path / "quick" / "benchmarks.md").read_text()


def test_report_counts_the_newest_measurement_of_a_figure(tmp_path):
    """A re-measured subset supersedes the whole run's figure: the older one is shown, marked,
    and no longer counted short."""
    from bench import report

    def bench(name, started, value, status):
        fig = {
            "key": "learn.rloo_se",
            "label": "RLOO gain",
            "value": value,
            "unit": "SE",
            "target": 2.0,
            "status": status,
            "note": "",
        }
        return {"name": name, "title": name.title(), "started": started, "figures": [fig]}

    benches = {
        "learning": bench("learning", "2026-11-29T11:00", -1.0, "short"),
        "learning_rloo": bench("learning_rloo", "2026-11-29T15:00", 2.5, "pass"),
    }
    assert report.superseded(benches) == {("learning", "learn.rloo_se"): "Learning_Rloo"}
    text = report.render({"generated": "now", "benches": benches}, docs_dir=tmp_path)
    assert "## Summary (0 figure(s) short of target)" in text
    assert '| superseded | re-measured in "Learning_Rloo"; was short' in text


def test_a_non_default_setting_is_reported_beside_the_defaults(capsys):
    """bench.learning.run --set RUN:FIELD=VALUE names its figures after the setting, so they
    neither supersede nor get superseded by the default's figures."""
    from bench import report
    from bench.common import Result
    from bench.learning import run, summary

    res = Result("learning_reward_rloo", "Learning proof, re-measured: reward, rloo", "full")
    res.figure("learn.rloo_se", "RLOO gain", 3.1, "SE", target=2.0)
    res.details["figure_rows"] = {"learn.rloo_se": "RLOO with the reward model"}
    summary.mark_variant(res, {"rloo": ["rollouts_per_sampling=4"]})
    variant = res.to_dict()
    assert variant["name"] == "learning_reward_rloo_rollouts_per_sampling4"
    key = "learn.rloo_se[rloo: rollouts_per_sampling=4]"
    assert [f["key"] for f in variant["figures"]] == [key]
    assert variant["details"]["figure_rows"] == {key: "RLOO with the reward model"}
    default = {
        "name": "learning",
        "title": "Learning",
        "started": "2026-11-29T11:00",
        "figures": [{**variant["figures"][0], "key": "learn.rloo_se"}],
    }
    assert report.superseded({"learning": default, variant["name"]: variant}) == {}
    with pytest.raises(SystemExit):
        run.main(["--smoke", "--set", "rollouts_per_sampling=4"])  # no RUN: prefix
    assert "write RUN:FIELD=VALUE" in capsys.readouterr().err


def test_the_cuda_bench_skips_without_cuda(monkeypatch, tmp_path, capsys):
    import torch

    from bench import cuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "cuda.json"
    assert cuda.main(["--out", str(out)]) == {}
    assert not out.exists() and "no CUDA device here" in capsys.readouterr().err


def test_gen_whole_held_to_avx2_kernels_is_its_own_result(tiny_model_dir, tmp_path, monkeypatch):
    """With torch and oneDNN held to AVX2 kernels (standing in for a CPU without native bf16) the
    generation bench reports under its own name, against the 2.5x target, without llama.cpp."""
    from bench import gen_whole

    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out = tmp_path / "result.json"
    argv = ["--smoke", "--model", str(tiny_model_dir), "--out", str(out)]
    gen_whole.main([*argv, "--workdir", str(tmp_path / "work")])
    result = json.loads(out.read_text())
    assert result["name"] == "gen_whole_avx2"
    figures = {f["key"]: f for f in result["figures"]}
    assert figures["gen_whole_avx2.ratio"]["target"] == 2.5  # beside gen_whole.ratio
    assert "no native bf16" in figures["gen_whole_avx2.ratio"]["label"]
    assert not any("llamacpp" in key for key in figures)
    assert any(note.startswith("Emulation:") for note in result["notes"])
