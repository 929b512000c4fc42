"""Which float precision a model runs in here: measured once on a CPU, fixed on a GPU.

CPUs differ: bf16 beats fp32 where the CPU has bf16 instructions (AVX-512 BF16, AMX, Arm BF16)
and torch uses them, and loses where torch emulates them. So on a CPU the choice is measured
(``calibration.calibrate``: a few seconds of the app's own work in each dtype) once per CPU,
torch version and model architecture, and cached as JSON in the data dir. CUDA and MPS keep
their fixed defaults.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from core.models.calibration import DTYPES, Calibration, calibrate, choose
from core.paths import data_dir

__all__ = [
    "Calibration",
    "PrecisionChoice",
    "architecture",
    "cache_key",
    "cached_choice",
    "calibrate",
    "choose",
    "cpu_dtype",
    "cpu_identity",
    "precision_for",
    "read_cache",
    "write_cache",
]
CACHE_NAME = "precision.json"
CACHE_VERSION = 1
MAX_INCONCLUSIVE = 3  # starts that try to measure on a busy machine before fp32 stays
_X86_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")
_ARM_FLAGS = ("asimdhp", "bf16", "i8mm", "sve", "sve2", "svebf16")
_MAC_FLAGS = {
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.avx512f": "avx512f",
}
log = logging.getLogger(__name__)


# ---- what the cache is keyed by ---------------------------------------------------------------
def cpu_identity() -> dict[str, Any]:
    """The CPU's name, its flags that decide low-precision speed, core count and torch version."""
    name, flags = "", set()
    if Path("/proc/cpuinfo").is_file():
        name, flags = _linux_cpu()
    elif sys.platform == "darwin":
        name, flags = _mac_cpu()
    return {
        "cpu": name or platform.processor() or platform.machine(),
        "flags": sorted(flags),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_capability": torch.backends.cpu.get_cpu_capability(),  # the kernels torch picked
    }


def _linux_cpu() -> tuple[str, set[str]]:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())  # the first core speaks for all
    except OSError:
        return "", set()
    # x86 says "model name" and "flags"; Arm says "Features" and identifies by implementer/part
    name = fields.get("model name") or fields.get("Model") or fields.get("Hardware", "")
    if not name and "CPU implementer" in fields:
        name = f"arm {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    if "cpu family" in fields:  # a VM may name only the brand ("AMD EPYC") for any generation
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    present = set((fields.get("flags") or fields.get("Features", "")).split())
    return name, present & set(_X86_FLAGS + _ARM_FLAGS)


def _mac_cpu() -> tuple[str, set[str]]:
    try:  # one sysctl call, a few milliseconds; unknown names are skipped by sysctl itself
        out = subprocess.run(
            ["sysctl", "machdep.cpu.brand_string", *_MAC_FLAGS],
            capture_output=True,
            text=True,
            timeout=2,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "", set()
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    flags = {flag for key, flag in _MAC_FLAGS.items() if values.get(key, "0").strip() == "1"}
    return values.get("machdep.cpu.brand_string", "").strip(), flags


def architecture(model_or_config: Any) -> dict[str, Any]:
    """The shapes that decide speed: the same for every fine-tune and checkpoint of one model."""
    config = getattr(model_or_config, "config", model_or_config)
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    names = (
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
    )
    return {n: getattr(config, n, None) for n in names}


def cache_key(identity: dict[str, Any], arch: dict[str, Any]) -> str:
    """A readable prefix (model type, width x depth) and a hash of CPU, flags, torch and shapes."""
    keyed = {k: identity.get(k) for k in ("cpu", "flags", "torch", "torch_capability")}
    digest = hashlib.sha256(json.dumps([keyed, arch], sort_keys=True).encode()).hexdigest()
    return f"{arch.get('model_type')}-{arch.get('hidden_size')}x{arch.get('num_hidden_layers')}-{digest[:16]}"


# ---- the cached choice -------------------------------------------------------------------------
@dataclass(frozen=True)
class PrecisionChoice:
    """The dtype for generation and for forward (reference, reward) passes, and where it came
    from: ``cuda``/``mps`` (fixed), ``cache`` or ``measured`` (a CPU calibration), or
    ``inconclusive`` (fp32: no calibration fitted its budget)."""

    generate: torch.dtype
    forward: torch.dtype
    source: str
    calibration: Calibration | None = None


def precision_for(
    model_or_config: Any,
    data_dir: str | Path,
    *,
    device: str | torch.device | None = None,
    tokenizer: Any = None,
    recalibrate: bool = False,
    calibrate_fn: Callable[..., Calibration] | None = None,
    on_measure: Callable[[], None] | None = None,
) -> PrecisionChoice:
    """The dtypes to run a model in: fixed on CUDA and MPS; on a CPU the cached choice for this
    CPU, torch and architecture, or a calibration run now (or when ``recalibrate``) and cached in
    ``data_dir``/precision.json. ``calibrate_fn(model_or_config, tokenizer=...)`` measures
    (default: ``calibrate``); ``on_measure`` is called just before, to tell a person why it waits."""
    dev = torch.device(device) if device is not None else _device_of(model_or_config)
    if dev.type in ("cuda", "mps"):
        fixed = (
            torch.float16
            if dev.type == "mps"
            else torch.bfloat16
            if torch.cuda.is_bf16_supported()
            else torch.float32
        )
        return PrecisionChoice(fixed, fixed, dev.type)
    identity, arch = cpu_identity(), architecture(model_or_config)
    key, path = cache_key(identity, arch), Path(data_dir) / CACHE_NAME
    entries = read_cache(path)
    entry = {} if recalibrate else entries.get(key, {})
    cached = _cached(entry)
    if cached is not None:
        return cached
    if "calibration" in entry:  # measured again
        log.warning("%s: entry %s unreadable; calibrating again", path, key)
    tries = entry.get("inconclusive", 0) if isinstance(entry.get("inconclusive"), int) else 0
    if tries >= MAX_INCONCLUSIVE:  # a machine this busy at every start: fp32 until asked again
        return PrecisionChoice(torch.float32, torch.float32, "inconclusive")
    if on_measure is not None:
        on_measure()
    cal = (calibrate_fn or calibrate)(model_or_config, tokenizer=tokenizer)
    record: dict[str, Any] = {"identity": identity, "architecture": arch}
    if cal.conclusive:
        record["calibration"] = asdict(cal)
    else:
        record["inconclusive"] = tries + 1
    record["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if cal.conclusive or "calibration" not in entries.get(key, {}):  # a good one stays
        entries[key] = record
        write_cache(path, entries)
    if not cal.conclusive:
        return PrecisionChoice(torch.float32, torch.float32, "inconclusive", cal)
    return _choice(cal, "measured")


def cpu_dtype(
    model: Any,
    tokenizer: Any,
    progress: Callable[[str, float | None], None] | None = None,
    *,
    measure: bool = True,
) -> tuple[torch.dtype, str] | None:
    """The dtype ``load_model`` runs a model in on a CPU when none was asked for (the measured
    generation choice) and where it came from: ``cache``, ``measured`` or ``inconclusive``
    (fp32: the measurement did not fit its budget; tried again at the next start, at most
    ``MAX_INCONCLUSIVE`` times, and always by the ``calibrate`` command).

    ``measure=False`` only looks in the cache (``model`` may be a config): None when this CPU
    has no choice for the architecture yet, so weights can be read in their final dtype."""
    if not measure:
        choice = cached_choice(model, data_dir())
        return None if choice is None else (choice.generate, choice.source)

    def say() -> None:
        if progress is not None:
            progress("Measuring fp32 and bf16 speed on this CPU (once, a few seconds)…", None)

    choice = precision_for(model, data_dir(), device="cpu", tokenizer=tokenizer, on_measure=say)
    return choice.generate, choice.source


def cached_choice(model_or_config: Any, data_dir: str | Path) -> PrecisionChoice | None:
    """This CPU's cached choice for the architecture, or None (never measured, or unreadable);
    never measures."""
    key = cache_key(cpu_identity(), architecture(model_or_config))
    return _cached(read_cache(Path(data_dir) / CACHE_NAME).get(key, {}))


def _cached(entry: dict[str, Any]) -> PrecisionChoice | None:
    """A cache entry's choice; None when it has no calibration or an unreadable one."""
    if "calibration" not in entry:
        return None
    try:
        return _choice(Calibration.from_dict(entry["calibration"]), "cache")
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _choice(cal: Calibration, source: str) -> PrecisionChoice:
    return PrecisionChoice(
        DTYPES[cal.choice["generate"]], DTYPES[cal.choice["forward"]], source, cal
    )


def _device_of(model_or_config: Any) -> torch.device:
    if isinstance(model_or_config, torch.nn.Module):
        return next(model_or_config.parameters()).device
    return torch.device("cpu")


def read_cache(path: Path) -> dict[str, Any]:
    """The cached entries by key; ``{}`` for a missing, corrupt or older-format file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:  # corrupt or unreadable: measured again and rewritten
        log.warning("%s is unreadable (%s); it will be rewritten", path, e)
        return {}
    ok = isinstance(data, dict) and data.get("version") == CACHE_VERSION
    return data["entries"] if ok and isinstance(data.get("entries"), dict) else {}


def write_cache(path: Path, entries: dict[str, Any]) -> None:
    """Write all entries atomically (temp file + rename): a reader sees the old file or the new."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".precision-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CACHE_VERSION, "entries": entries}, f, indent=1)
        os.replace(tmp, path)
    except OSError as e:  # a read-only data dir: the choice holds for this run only
        log.warning("could not write %s (%s); the next start calibrates again", path, e)
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
