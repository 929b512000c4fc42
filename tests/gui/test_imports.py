"""The gui package gives imports back from PySide6's ``__feature__`` hook (gui/__init__.py)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import textwrap

from gui import release_feature_import_hook

# A fresh interpreter, as the app starts: PySide6 imported through the gui package, a window
# shown, then a module imported that nothing has read before (a model's code, on a worker).
SCRIPT = textwrap.dedent(
    """
    import linecache, sys
    sys.path.insert(0, sys.argv[1])
    import gui
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication, QLabel
    app = QApplication([])
    label = QLabel("ok")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.show()
    app.processEvents()
    import later_module
    read = [f for f in linecache.cache if f.endswith("later_module.py")]
    print(label.text(), later_module.VALUE, len(read))
    """
)


def test_modules_imported_after_the_window_are_not_read_for_pyside(tmp_path):
    (tmp_path / "later_module.py").write_text("VALUE = 42\n")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    assert out.returncode == 0, out.stderr
    # Qt still works, the module imported, and its source was never read into linecache
    assert out.stdout.split() == ["ok", "42", "0"]


def test_another_replacement_of_import_is_left_alone(monkeypatch):
    current = builtins.__import__

    def custom_import(*args, **kwargs):
        return current(*args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", custom_import)
    assert release_feature_import_hook() is False
    assert builtins.__import__ is custom_import
