"""Imports with the garbage collector paused, then frozen (core.quiet_imports)."""

import gc
import subprocess
import sys
import threading

import pytest

from core.quiet_imports import collector_paused, import_without, quiet_import


@pytest.fixture(autouse=True)
def _restore_collector():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()  # the test process goes back to collecting everything
    (gc.enable if enabled else gc.disable)()


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    """A folder on sys.path for modules made by the test; they leave sys.modules afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_new_import_runs_without_collections_and_is_frozen_after(module_dir):
    (module_dir / "quiet_probe_mod.py").write_text(
        "import gc\nCOLLECTOR_ON = gc.isenabled()\nTABLE = [[i] for i in range(2000)]\n"
    )
    gc.enable()
    frozen = gc.get_freeze_count()
    quiet_import("quiet_probe_mod")
    mod = sys.modules["quiet_probe_mod"]
    assert mod.COLLECTOR_ON is False  # no collection could start while it was imported
    assert gc.isenabled()  # and collection is back afterwards
    assert gc.get_freeze_count() >= frozen + 2000  # its objects are no longer walked
    assert id(mod.TABLE) not in {id(o) for o in gc.get_objects()}  # (the permanent generation)

    frozen = gc.get_freeze_count()
    quiet_import("quiet_probe_mod")  # already imported: nothing to pause or freeze
    assert gc.get_freeze_count() == frozen


def test_a_disabled_collector_stays_disabled(module_dir):
    (module_dir / "quiet_probe_two.py").write_text("X = 1\n")
    gc.disable()
    quiet_import("quiet_probe_two")
    assert not gc.isenabled()


def test_missing_modules_raise_unless_optional(module_dir):
    with pytest.raises(ImportError):
        quiet_import("no_such_module_for_rlhf_studio")
    quiet_import("no_such_module_for_rlhf_studio", optional=True)
    assert gc.isenabled()  # a failed import still resumes collection


def test_pauses_from_two_threads_resume_only_when_both_have_left():
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def other():
        with collector_paused():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with collector_paused():
        pass
    assert not gc.isenabled()  # the other thread is still importing
    release.set()
    t.join(10)
    assert gc.isenabled()


def test_import_without_keeps_an_optional_dependency_out_and_importable_after(module_dir):
    (module_dir / "heavy_optional.py").write_text("LOADED = True\n")
    (module_dir / "uses_optional.py").write_text(
        "try:\n    import heavy_optional\nexcept ImportError:\n    heavy_optional = None\n"
    )
    mod = import_without("uses_optional", "heavy_optional")
    assert mod.heavy_optional is None and "heavy_optional" not in sys.modules
    import heavy_optional  # still importable by whoever needs it later

    assert heavy_optional.LOADED


def test_the_store_does_not_load_pandas(tmp_path):
    """sqlite-utils would import pandas (installed with `datasets`) at every start-up."""
    pytest.importorskip("pandas")
    code = (
        "import sys, core.store; assert 'pandas' not in sys.modules, 'pandas was imported'; "
        f"import pandas; core.store.ProjectStore({str(tmp_path / 'p.db')!r}).close()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
