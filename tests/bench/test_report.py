"""The benchmark report's summary: a CPU-speed excuse only for results from the CPU it measured."""

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
