"""The benchmark report: a CPU-speed excuse only for results from the CPU it measured, and each
result measured on another machine than the report's says which; no table heading without rows."""

from __future__ import annotations

from bench import report


def _bench(name: str, cpu: str, figures: list[dict]) -> dict:
    return {"name": name, "title": name, "machine": {"cpu": cpu}, "figures": figures}


def _fig(key: str, value: float, unit: str, status: str, target: float | None = None) -> dict:
    return {
        "key": key,
        "label": key,
        "value": value,
        "unit": unit,
        "status": status,
        "target": target,
        "better": "lower",
        "note": "",
    }


def test_the_slower_cpu_note_names_only_results_from_that_cpu():
    benches = {
        "gen_speed": _bench("gen_speed", "old CPU", [_fig("gen.plain_k8", 30.0, "tok/s", "info")]),
        "memory": _bench("memory", "old CPU", [_fig("mem.time", 700.0, "s", "short", 300.0)]),
        "cold_start": _bench("cold_start", "new CPU", [_fig("cold.t", 12.0, "s", "short", 5.0)]),
    }
    rows = {line.split(" | ")[0].strip("| "): line for line in report.summary_table(benches)[2:]}
    assert "slower than the target's CPU" in rows["memory"]
    assert "slower than the target's CPU" not in rows["cold_start"]


def test_a_result_from_another_machine_names_its_cpu(tmp_path):
    results = {
        "machine": {"cpu": "old CPU"},
        "benches": {
            "memory": _bench("memory", "old CPU", [_fig("mem.time", 700.0, "s", "info")]),
            "cold_start": _bench("cold_start", "new CPU", [_fig("cold.t", 12.0, "s", "info")]),
        },
    }
    text = report.render(results, tmp_path)
    sections = {s.split("\n", 1)[0]: s for s in text.split("## ")[1:]}
    assert "on new CPU" in sections["cold_start"]
    assert "on old CPU" not in sections["memory"] and "on new CPU" not in sections["memory"]
    assert "except the 1 section(s) that name another CPU" in text


def test_a_table_without_rows_gets_no_heading():
    details = {
        "table": [{"policy": "base", "gain": 0.1}],
        "tables": [
            {"title": "Each seed", "rows": [{"seed": 0, "gain": 0.1}]},
            {"title": "Reward models", "rows": []},
        ],
    }
    text = "\n".join(report._table_details(details))
    assert "**Each seed**" in text and "Reward models" not in text
