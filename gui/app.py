"""The desktop app entry point (the full window arrives with the rating panel)."""

from __future__ import annotations

import sys


def run_app(args) -> int:
    from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    win = QMainWindow()
    win.setWindowTitle("RLHF Studio")
    win.setCentralWidget(QLabel("RLHF Studio"))
    win.resize(900, 600)
    win.show()
    if getattr(args, "screenshot", None):
        app.processEvents()
        win.grab().save(args.screenshot)
        return 0
    return app.exec()
