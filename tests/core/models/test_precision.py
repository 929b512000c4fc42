"""Precision by measurement: the cache, its key, the choice logic and a real short calibration."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch

from core.models import calibration, precision
from core.models.calibration import Calibration, calibrate, cast_copy, choose
from core.models.precision import CACHE_NAME, precision_for


@pytest.fixture(scope="module")
def tiny() -> Any:
    """A 2-layer Llama with random weights: the architecture of the default model, in small."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


class CharTokenizer:
    """Enough of a tokenizer for the numerics check: one id per character."""

    def __call__(self, text: str, return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        return {"input_ids": torch.tensor([[ord(c) % 256 for c in text[:64]]])}


class FakeCalibrate:
    """A calibrate_fn that records its calls and reports the given speed-ups."""

    def __init__(self, generate: float = 1.5, forward: float = 0.8, conclusive: bool = True):
        self.calls: list[Any] = []
        self.speedup = {
            "generate": {"fp32": 1.0, "bf16": generate},
            "forward": {"fp32": 1.0, "bf16": forward},
        }
        self.conclusive = conclusive

    def __call__(self, model_or_config: Any, *, tokenizer: Any = None, **kw: Any) -> Calibration:
        self.calls.append(model_or_config)
        self.kwargs = kw
        agreement = {"fp32": 1.0, "bf16": 0.97}
        return Calibration(
            timings={},
            speedup=self.speedup,
            round_speedups={},
            agreement=agreement,
            choice=choose(self.speedup, agreement),
            rounds=3,
            seconds=0.1,
            threads=1,
            conclusive=self.conclusive,
        )


# ---- the cache ------------------------------------------------------------------------------------
def test_cache_round_trips(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate()
    first = precision_for(tiny, tmp_path, calibrate_fn=fake)
    second = precision_for(tiny, tmp_path, calibrate_fn=fake)
    assert (first.source, second.source) == ("measured", "cache")
    assert len(fake.calls) == 1
    assert (second.generate, second.forward) == (torch.bfloat16, torch.float32)
    assert second.calibration == first.calibration
    data = json.loads((tmp_path / CACHE_NAME).read_text())
    (entry,) = data["entries"].values()
    assert entry["identity"]["torch"] == torch.__version__
    assert entry["architecture"]["hidden_size"] == 64


def test_config_shares_the_model_entry(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate()
    precision_for(tiny, tmp_path, calibrate_fn=fake)
    assert precision_for(tiny.config, tmp_path, calibrate_fn=fake).source == "cache"


@pytest.mark.parametrize(
    "change",
    [{"torch": "9.9.9"}, {"flags": ["avx2", "avx512_bf16", "amx_bf16"]}, {"cpu": "Other CPU"}],
)
def test_another_cpu_or_torch_misses_the_cache(
    tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    fake = FakeCalibrate()
    precision_for(tiny, tmp_path, calibrate_fn=fake)
    real = precision.cpu_identity()
    monkeypatch.setattr(precision, "cpu_identity", lambda: {**real, **change})
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "measured"
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "cache"
    assert len(fake.calls) == 2
    assert len(json.loads((tmp_path / CACHE_NAME).read_text())["entries"]) == 2


def test_another_architecture_misses_the_cache(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate()
    precision_for(tiny, tmp_path, calibrate_fn=fake)
    wider = tiny.config.to_dict() | {"hidden_size": 128}
    config = type(tiny.config)(**wider)
    assert precision_for(config, tmp_path, calibrate_fn=fake).source == "measured"


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"version": 1, "entries": []}', "[]", '{"version": 999, "entries": {}}', ""],
)
def test_a_corrupt_cache_is_rewritten(tiny: Any, tmp_path: Path, content: str) -> None:
    (tmp_path / CACHE_NAME).write_text(content)
    fake = FakeCalibrate()
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "measured"
    data = json.loads((tmp_path / CACHE_NAME).read_text())
    assert data["version"] == precision.CACHE_VERSION and len(data["entries"]) == 1
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "cache"


def test_an_unreadable_entry_is_measured_again(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate()
    precision_for(tiny, tmp_path, calibrate_fn=fake)
    path = tmp_path / CACHE_NAME
    data = json.loads(path.read_text())
    for entry in data["entries"].values():
        entry["calibration"]["choice"] = {"generate": "int3"}
    path.write_text(json.dumps(data))
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "measured"
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "cache"


def test_recalibrate_measures_again(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate()
    precision_for(tiny, tmp_path, calibrate_fn=fake)
    fake.speedup["generate"]["bf16"] = 0.5  # the machine changed its mind
    again = precision_for(tiny, tmp_path, recalibrate=True, calibrate_fn=fake)
    assert again.source == "measured" and again.generate == torch.float32
    assert len(fake.calls) == 2
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).generate == torch.float32


def test_an_inconclusive_calibration_is_tried_again_a_few_times(tiny: Any, tmp_path: Path) -> None:
    fake = FakeCalibrate(conclusive=False)
    for _ in range(precision.MAX_INCONCLUSIVE):
        choice = precision_for(tiny, tmp_path, calibrate_fn=fake)
        assert (choice.generate, choice.source) == (torch.float32, "inconclusive")
    assert len(fake.calls) == precision.MAX_INCONCLUSIVE
    (entry,) = json.loads((tmp_path / CACHE_NAME).read_text())["entries"].values()
    assert entry["inconclusive"] == precision.MAX_INCONCLUSIVE and "calibration" not in entry
    choice = precision_for(tiny, tmp_path, calibrate_fn=fake)  # a busy machine: no more waiting
    assert choice.source == "inconclusive" and len(fake.calls) == precision.MAX_INCONCLUSIVE
    fake.conclusive = True  # asked for (the calibrate command): measured, and kept
    assert precision_for(tiny, tmp_path, recalibrate=True, calibrate_fn=fake).source == "measured"
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).source == "cache"
    fake.conclusive = False  # asked for again on a busy machine: the good measurement stays
    again = precision_for(tiny, tmp_path, recalibrate=True, calibrate_fn=fake)
    assert again.source == "inconclusive"
    assert precision_for(tiny, tmp_path, calibrate_fn=fake).generate == torch.bfloat16


def test_an_unwritable_data_dir_still_gives_a_choice(tiny: Any, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    choice = precision_for(tiny, tmp_path / "file" / "sub", calibrate_fn=FakeCalibrate())
    assert choice.generate == torch.bfloat16


def test_gpus_are_not_calibrated(
    tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeCalibrate()
    assert precision_for(tiny, tmp_path, device="mps", calibrate_fn=fake).generate == torch.float16
    for supported, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        choice = precision_for(tiny, tmp_path, device="cuda", calibrate_fn=fake)
        assert (choice.generate, choice.forward, choice.source) == (dtype, dtype, "cuda")
    assert not fake.calls and not (tmp_path / CACHE_NAME).exists()


# ---- the choice ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("generate", "forward", "agree", "expected"),
    [
        (1.5, 1.3, 0.98, {"generate": "bf16", "forward": "bf16"}),
        (1.05, 1.09, 0.98, {"generate": "fp32", "forward": "fp32"}),  # within the margin
        (0.47, 0.5, 0.98, {"generate": "fp32", "forward": "fp32"}),  # bf16 emulated
        (1.8, 2.0, 0.6, {"generate": "fp32", "forward": "fp32"}),  # fast but wrong
        (1.3, 0.9, 0.98, {"generate": "bf16", "forward": "fp32"}),  # per kind of work
        (1.3, 1.3, None, {"generate": "bf16", "forward": "bf16"}),  # nothing to check with
    ],
)
def test_choose(generate: float, forward: float, agree: float | None, expected: dict) -> None:
    speedup = {
        "generate": {"fp32": 1.0, "bf16": generate},
        "forward": {"fp32": 1.0, "bf16": forward},
    }
    assert choose(speedup, {"fp32": 1.0, "bf16": agree}) == expected


def fake_work(seconds: dict[torch.dtype, float]) -> Any:
    """A ``_Work.run`` that reports ``seconds`` per unit for a model of each dtype."""

    def run(self: Any, models: dict[str, Any], steps: int | None = None, skip=None) -> dict:
        out = {}
        for name, model in models.items():
            s = seconds[next(model.parameters()).dtype]
            out[name] = {"prefill": s, "decode_step": s / 10, "generate": s * 7.4, "forward": s}
            for kind in (skip or {}).get(name, ()):
                units = ("prefill", "decode_step", "generate") if kind == "generate" else (kind,)
                for unit in units:
                    del out[name][unit]
        return out

    return run


@pytest.mark.parametrize(("bf16_s", "expected"), [(0.5, "bf16"), (0.95, "fp32"), (1.05, "fp32")])
def test_calibrate_chooses_by_the_timings(
    tiny: Any, monkeypatch: pytest.MonkeyPatch, bf16_s: float, expected: str
) -> None:
    monkeypatch.setattr(
        calibration._Work, "run", fake_work({torch.float32: 1.0, torch.bfloat16: bf16_s})
    )
    cal = calibrate(tiny, tokenizer=CharTokenizer(), min_agreement=0.0)
    assert cal.conclusive and cal.rounds == 3
    assert cal.speedup["generate"]["bf16"] == pytest.approx(1 / bf16_s)
    assert cal.choice == {"generate": expected, "forward": expected}


def test_bf16_clearly_slower_in_the_warm_up_is_not_timed_further(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CPU without fast bf16 kernels (bf16 at 0.47x fp32 on an AVX2 CPU) settles on fp32 at
    once and for good, instead of timing bf16 until the budget runs out (inconclusive)."""
    monkeypatch.setattr(
        calibration._Work, "run", fake_work({torch.float32: 1.0, torch.bfloat16: 2.1})
    )
    cal = calibrate(tiny, tokenizer=CharTokenizer(), min_agreement=0.0)
    assert cal.conclusive and cal.rounds == 0
    assert cal.choice == {"generate": "fp32", "forward": "fp32"}
    assert cal.speedup["generate"]["bf16"] == pytest.approx(1 / 2.1)
    assert "in the warm-up round: slower" in cal.notes[0]
    assert Calibration.from_dict(asdict(cal)) == cal  # cached like any other


def test_a_kind_of_work_bf16_is_clearly_slower_at_is_settled_by_the_warm_up(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16 faster at generation but 3x slower at forward passes: generation is timed in rounds,
    forward passes (of either dtype) no more after the warm-up round."""
    fwd = {torch.float32: 1.0, torch.bfloat16: 3.0}
    calls: list[dict] = []

    def run(self: Any, models: dict[str, Any], steps: int | None = None, skip=None) -> dict:
        calls.append({n: set(k) for n, k in (skip or {}).items()})
        out = {}
        for name, model in models.items():
            dtype = next(model.parameters()).dtype
            s = 0.5 if dtype == torch.bfloat16 else 1.0
            out[name] = {"prefill": s, "decode_step": s / 10, "generate": s * 7.4}
            if "forward" not in (skip or {}).get(name, ()):
                out[name]["forward"] = fwd[dtype]
        return out

    monkeypatch.setattr(calibration._Work, "run", run)
    cal = calibrate(tiny, tokenizer=CharTokenizer(), min_agreement=0.0)
    assert cal.conclusive and cal.rounds == 3
    assert cal.choice == {"generate": "bf16", "forward": "fp32"}
    assert cal.speedup["forward"]["bf16"] == pytest.approx(1 / 3)
    assert cal.speedup["generate"]["bf16"] == pytest.approx(2.0)
    assert calls[-3:] == [{"bf16": {"forward"}, "fp32": {"forward"}}] * 3  # the timed rounds
    assert cal.timings["forward"] == {}
    assert "bf16 ran at 0.33x fp32 at forward passes in the warm-up round" in cal.notes[0]


def test_calibrate_refuses_bf16_that_disagrees(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        calibration._Work, "run", fake_work({torch.float32: 1.0, torch.bfloat16: 0.5})
    )
    cal = calibrate(tiny, tokenizer=CharTokenizer(), min_agreement=1.01)
    assert cal.choice == {"generate": "fp32", "forward": "fp32"}


def test_bf16_that_cannot_run_falls_back_to_fp32(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = calibration.cast_copy

    def no_bf16(model: Any, dtype: torch.dtype) -> Any:
        if dtype == torch.bfloat16:
            raise RuntimeError("\"addmm_impl_cpu_\" not implemented for 'BFloat16'")
        return real(model, dtype)

    monkeypatch.setattr(calibration, "cast_copy", no_bf16)
    cal = calibrate(tiny, budget_s=5)
    assert cal.conclusive and cal.choice == {"generate": "fp32", "forward": "fp32"}
    assert any("bf16 cannot run here" in n for n in cal.notes)


def test_a_spent_budget_is_inconclusive(tiny: Any) -> None:
    clock = iter(range(0, 10_000, 5))  # every reading 5 s later than the last
    cal = calibrate(tiny, budget_s=12, timer=lambda: float(next(clock)))
    assert not cal.conclusive and cal.choice == {"generate": "fp32", "forward": "fp32"}
    assert cal.rounds == 0 and "budget was spent while fp32" in cal.notes[0]


# ---- real work on the tiny model ------------------------------------------------------------------
def test_a_real_short_calibration_stays_in_its_budget(tiny: Any) -> None:
    cal = calibrate(tiny, tokenizer=CharTokenizer(), batch=4, steps=4, budget_s=4.0)
    assert cal.seconds <= 4.0 + 1.0  # at most one model call over
    assert set(cal.choice) == {"generate", "forward"}
    assert set(cal.choice.values()) <= {"fp32", "bf16"}
    if cal.conclusive:  # timed in rounds, or bf16 left out as slower after the warm-up
        slower = any("warm-up round: slower" in n for n in cal.notes)
        assert cal.rounds >= 2 or (cal.rounds == 0 and slower)
        assert all(t > 0 for t in cal.timings["decode_step"].values())
        assert 0.0 <= cal.agreement["bf16"] <= 1.0
    assert Calibration.from_dict(json.loads(json.dumps(cal.__dict__))) == cal


def test_a_config_is_calibrated_with_random_weights(tiny: Any) -> None:
    cal = calibrate(tiny.config, batch=2, steps=2, budget_s=4.0)
    assert cal.agreement == {"fp32": None, "bf16": None} or not cal.conclusive


def test_a_round_interleaves_the_dtypes_call_by_call(tiny: Any) -> None:
    models = {"fp32": tiny, "bf16": cast_copy(tiny, torch.bfloat16)}
    calls: list[str] = []
    hooks = [
        m.register_forward_pre_hook(lambda *_, n=n: calls.append(n)) for n, m in models.items()
    ]
    try:
        ids = torch.randint(256, (2, 8))
        work = calibration._Work(
            ids, ids, steps=3, new_tokens=10, timer=time.perf_counter, deadline=float("inf")
        )
        seconds = work.run(models)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == ["fp32", "bf16"] * 5  # prefill, 3 decode steps, forward
    for s in seconds.values():
        assert s["generate"] == pytest.approx(s["prefill"] + 10 * s["decode_step"])


def test_cast_copy_leaves_the_model_alone_and_keeps_ties(tiny: Any) -> None:
    copy_ = cast_copy(tiny, torch.bfloat16)
    assert next(tiny.parameters()).dtype == torch.float32
    assert all(p.dtype == torch.bfloat16 for p in copy_.parameters())
    assert copy_.lm_head.weight is copy_.model.embed_tokens.weight
    assert cast_copy(tiny, torch.float32) is tiny


def test_cpu_identity() -> None:
    ident = precision.cpu_identity()
    assert ident["torch"] == torch.__version__ and ident["cpu"] and ident["cores"]
    assert set(ident["flags"]) <= set(precision._X86_FLAGS + precision._ARM_FLAGS)


# ---- load_model and the calibrate command ---------------------------------------------------------
REAL_CPU_DTYPE = precision.cpu_dtype  # tests/conftest.py replaces it for every other test


@pytest.fixture
def measuring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCalibrate:
    """load_model's own measuring, with a fake calibration and a data dir of this test's."""
    monkeypatch.setenv("RLHF_STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(precision, "cpu_dtype", REAL_CPU_DTYPE)
    fake = FakeCalibrate(generate=1.6, forward=1.3)
    monkeypatch.setattr(precision, "calibrate", fake)
    return fake


def test_load_model_on_a_cpu_uses_the_measured_precision(
    tiny_model_dir: Path, measuring: FakeCalibrate
) -> None:
    from core.models import load_model
    from core.paths import data_dir

    fake = measuring
    said: list[str] = []
    first = load_model(str(tiny_model_dir), device="cpu", progress=lambda m, f: said.append(m))
    assert first.dtype == torch.bfloat16 and first.precision == "measured"
    assert all(p.dtype == torch.bfloat16 for p in first.model.parameters())
    assert first.device_label == "cpu (bfloat16, measured)"
    assert any("Measuring fp32 and bf16" in m for m in said)
    again = load_model(str(tiny_model_dir), device="cpu", dtype="auto")
    assert (again.dtype, again.precision, len(fake.calls)) == (torch.bfloat16, "cache", 1)
    assert (data_dir() / CACHE_NAME).exists()
    asked = load_model(str(tiny_model_dir), device="cpu", dtype="fp32")  # --dtype overrides
    assert (asked.dtype, asked.precision, asked.device_label) == (
        torch.float32,
        "asked",
        "cpu (float32)",
    )
    assert len(fake.calls) == 1


def test_generated_samples_record_the_measured_dtype(
    tiny_model_dir: Path, project_with_prompts: Any, measuring: FakeCalibrate
) -> None:
    from core.generation import GenerationParams, generate_samples
    from core.models import load_model

    loaded = load_model(str(tiny_model_dir), device="cpu")
    params = GenerationParams(per_prompt=2, max_new_tokens=4, seed=1)
    (progress,) = list(generate_samples(project_with_prompts, loaded, params, limit=1))
    row = project_with_prompts.conn.execute(
        "SELECT params FROM samples WHERE id = ?", (progress.sample_ids[0],)
    ).fetchone()
    assert json.loads(row[0])["dtype"] == "bfloat16"


def test_the_calibrate_command_measures_again(
    tiny_model_dir: Path, tmp_path: Path, measuring: FakeCalibrate, capsys: Any
) -> None:
    from core.cli import build_parser, run
    from core.paths import data_dir

    fake = measuring
    db = str(tmp_path / "p.db")
    args = build_parser().parse_args(["--db", db, "calibrate", "--model", str(tiny_model_dir)])
    assert run(args) == 0
    out = capsys.readouterr().out
    assert "generation: bf16 runs at 1.60x fp32 -> bf16" in out and "Saved in" in out
    assert run(args) == 0 and len(fake.calls) == 2  # on demand: never the cached answer
    assert fake.kwargs == {"budget_s": 10.0}
    entries = precision.read_cache(data_dir() / CACHE_NAME)
    assert len(entries) == 1
    bad = build_parser().parse_args(["--db", db, "--device", "cuda", "calibrate"])
    assert run(bad) == 2


def test_a_cached_choice_reads_the_weights_in_it(
    tiny_model_dir: Path, measuring: FakeCalibrate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once this CPU has chosen bf16, later loads read bf16 weights, never an fp32 copy."""
    from transformers import AutoModelForCausalLM

    from core.models import load_model

    asked: list[torch.dtype] = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        asked.append(kwargs.get("dtype"))
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    first = load_model(str(tiny_model_dir), device="cpu")  # nothing cached: fp32, measured, cast
    again = load_model(str(tiny_model_dir), device="cpu")
    assert asked == [torch.float32, torch.bfloat16]
    assert (first.precision, again.precision) == ("measured", "cache")
    assert all(p.dtype == torch.bfloat16 for p in again.model.parameters())
    assert load_model(str(tiny_model_dir), device="cpu", dtype="fp32").dtype == torch.float32
    assert asked[-1] == torch.float32  # --dtype still decides


def test_a_measured_then_cast_model_equals_one_read_in_the_dtype(
    tiny_model_dir: Path, measuring: FakeCalibrate
) -> None:
    """The first load (fp32, measured, cast) runs exactly what later loads read in bf16: the same
    weights, and buffers such as the rotary frequencies left in fp32."""
    from core.models import load_model

    first = load_model(str(tiny_model_dir), device="cpu").model
    again = load_model(str(tiny_model_dir), device="cpu").model
    a, b = dict(first.named_buffers()), dict(again.named_buffers())
    assert a and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in b)
    assert any(v.dtype == torch.float32 for v in b.values())  # could fail: a cast of everything
    sa, sb = first.state_dict(), again.state_dict()
    assert all(sa[k].dtype == torch.bfloat16 and torch.equal(sa[k], sb[k]) for k in sb)
