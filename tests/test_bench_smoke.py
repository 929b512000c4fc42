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
    "bench.store_speed",
    "bench.dpo_vs_trl",
    "bench.memory",
    "bench.cold_start",
    "bench.latency",
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
    assert result["mode"] == "smoke" and result["machine"]["cores"]
    assert result["figures"], f"{module} reported no figures"
    for fig in result["figures"]:
        assert fig["status"] in ("pass", "short", "info", "missing"), fig
    smoke_results[result["name"]] = result


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


def test_suite_runner_rejects_unknown_scripts(capsys):
    from bench import run

    with pytest.raises(SystemExit):
        run.main(["--only", "no_such_benchmark"])
    assert "unknown script" in capsys.readouterr().err
