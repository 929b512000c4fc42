"""The desktop app: QApplication, the main window (tabs Rate, Train, Data), QSettings, screenshots.

``run_app(args)`` is what ``python main.py [--db FILE] [gui ...]`` runs. With ``--screenshot
OUT.png`` it renders the window offscreen once its real content is ready (the first rating item,
or the empty state of a project without prompts), saves the PNG and exits: 0 when the content was
ready, 1 when it timed out or nothing could be prepared (the PNG then shows what was on screen).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QSettings, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QTabWidget,
)

from core.errors import UserError
from gui.context import AppContext
from gui.data.panel import DataPanel
from gui.display import check_display
from gui.fonts import apply_app_fonts
from gui.rate.panel import RatePanel
from gui.settings_dialog import SettingsDialog
from gui.train.panel import TrainPanel
from gui.widgets import ShortcutSheet
from gui.workers import running_tasks, stop_all

ORG = APP = "RLHF Studio"
TABS = ("rate", "train", "data")
SCREENSHOT_TIMEOUT_S = 120.0
GIL_SWITCH_INTERVAL_S = 0.001  # Python's default is 0.005
EXIT_WAIT_S = 120.0  # the longest a closing app waits for background work
GUI_BUSY_TIMEOUT_MS = 3000  # a locked file fails a rating in 3 s with a message, not a 10 s freeze


class MainWindow(QMainWindow):
    """Tabs Rate, Train, Data over one AppContext; the status bar shows what runs in the background."""

    def __init__(self, ctx: AppContext, confirm_close: bool = True):
        super().__init__()
        self.ctx = ctx
        self.confirm_close = confirm_close
        self.setWindowTitle(f"RLHF Studio — {ctx.db_path.name}")
        self.rate_panel = RatePanel(ctx)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.rate_panel, "Rate")
        self.tabs.addTab(TrainPanel(ctx), "Train")
        self.tabs.addTab(DataPanel(ctx), "Data")
        ctx.settings_requested.connect(self.open_settings)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)
        self._build_status_bar()
        self._build_menu()
        self.resize(1280, 820)

    def _build_status_bar(self) -> None:
        ctx, bar = self.ctx, self.statusBar()
        self.project_label = QLabel(f"Project: {ctx.db_path.name}")
        self.project_label.setToolTip(str(ctx.db_path))
        spec = ctx.settings()["model"]
        self.model_label = QLabel(f"Model: {spec}")
        self.device_label = QLabel(f"Device: {ctx.device or 'auto'}")
        self.annotator_label = QLabel(f"Annotator: {ctx.annotator}")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.setTextVisible(True)
        self.progress.hide()
        for w in (self.project_label, self.model_label, self.device_label, self.annotator_label):
            bar.addPermanentWidget(w)
        bar.addPermanentWidget(self.progress)
        ctx.background_progress.connect(self.show_progress)
        ctx.status_message.connect(lambda text: bar.showMessage(text, 10000))
        self.rate_panel.feeder.model_status.connect(self.show_model)

    def _build_menu(self) -> None:
        project = self.menuBar().addMenu("&Project")
        project.addAction("&Settings…", self.open_settings)
        project.addSeparator()
        project.addAction("&Quit", self.close)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction("&Keyboard shortcuts", lambda: ShortcutSheet(self).open())
        help_menu.addAction("&Guidelines", self.rate_panel.view.toggle_guidelines)

    def open_settings(self) -> None:
        SettingsDialog(self.ctx, self).open()

    def show_model(self, model: str, device: str) -> None:
        self.model_label.setText(f"Model: {model}")
        self.device_label.setText(f"Device: {device}")

    def show_progress(self, label: str, done: int, total: int) -> None:
        """(label, done, total): total 0 hides the bar, a negative total shows it busy."""
        if total == 0:
            self.progress.hide()
            return
        if total < 0:
            self.progress.setRange(0, 0)
            self.progress.setFormat(label)
        else:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
            self.progress.setFormat(f"{label} %v/%m")
        self.progress.setToolTip(label)
        self.progress.show()

    def select_tab(self, name: str) -> None:
        self.tabs.setCurrentIndex(TABS.index(name))

    def _tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.rate_panel:
            self.rate_panel.setFocus()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        others = [t.name for t in running_tasks() if t.name not in ("refill", "load-model")]
        if others and self.confirm_close:
            answer = QMessageBox.question(
                self,
                "Quit RLHF Studio",
                f"Background work is running ({', '.join(sorted(set(others)))}). Stop it and "
                "quit? Everything already written to the project file is kept.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.statusBar().showMessage("Stopping background work…")
        self.rate_panel.shutdown()
        stop_background_work()
        event.accept()


def configure_runtime() -> int:
    """Process-wide settings that keep the window responsive while models run on worker threads;
    returns the torch CPU threads background work gets.

    Generation and training threads hold the GIL between tensor ops: a shorter switch interval lets
    the GUI thread take it back sooner. On a CPU, torch's own threads would also take every core,
    and the GUI thread then waits for the OS scheduler: background model work gets one core fewer
    than the machine has. And the garbage collector's full collections walk only what was created
    after start-up (core.quiet_imports). The measurements: docs/design.md.
    """
    import torch

    from core.quiet_imports import freeze_imported

    # what start-up imported (Qt, torch, the app) is never garbage: later full collections skip it
    freeze_imported()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    if not torch.cuda.is_available():
        torch.set_num_threads(background_threads(torch.get_num_threads()))
    return torch.get_num_threads()


def background_threads(current: int) -> int:
    """Torch CPU threads for background model work: one core fewer than the machine has (at
    least one, never more than ``current``)."""
    cores = os.cpu_count() or 1
    return max(1, min(current, cores - 1)) if cores > 1 else current


def ask_annotator(settings: QSettings) -> str | None:
    """The remembered annotator name, or ask once and remember it."""
    name = str(settings.value("annotator", "") or "").strip()
    if name:
        return name
    name, ok = QInputDialog.getText(
        None,
        "Welcome to RLHF Studio",
        "Your name as an annotator (saved with every rating you make):",
    )
    name = name.strip() if ok else ""
    if name:
        settings.setValue("annotator", name)
    return name or None


def _report(text: str, screenshot: bool) -> None:
    print(f"error: {text}", file=sys.stderr)
    if not screenshot:
        QMessageBox.critical(None, "RLHF Studio", text)


def run_app(args) -> int:
    """Open the window on the project file (args: db, annotator, device, dtype,
    trust_remote_code, screenshot, tab); returns the process exit code."""
    from core.paths import default_project_path

    screenshot = getattr(args, "screenshot", None)
    if screenshot and not QApplication.instance():
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if not QApplication.instance():
        check_display()
    app = QApplication.instance() or QApplication(sys.argv[:1])
    configure_runtime()
    app.setOrganizationName(ORG)
    app.setApplicationName(APP)
    apply_app_fonts(app)
    settings = QSettings(ORG, APP)
    annotator = (getattr(args, "annotator", None) or "").strip()
    if annotator:
        settings.setValue("annotator", annotator)
    elif screenshot:
        annotator = str(settings.value("annotator", "") or "").strip() or "screenshot"
    else:
        annotator = ask_annotator(settings) or ""
        if not annotator:
            print("No annotator name given; nothing was opened.", file=sys.stderr)
            return 1
    db = Path(args.db).expanduser() if getattr(args, "db", None) else default_project_path()
    try:
        ctx = AppContext(
            db,
            annotator,
            device=getattr(args, "device", None),
            dtype=getattr(args, "dtype", None),
            trust_remote_code=bool(getattr(args, "trust_remote_code", False)),
        )
    except UserError as e:
        _report(f"The project file could not be opened.\n\n{e}", bool(screenshot))
        return 2
    ctx.store.set_busy_timeout(GUI_BUSY_TIMEOUT_MS)
    window = MainWindow(ctx, confirm_close=not screenshot)
    if screenshot:  # a picture needs a model only when the project has too few responses
        window.rate_panel.feeder.eager_model = False
    window.select_tab(getattr(args, "tab", None) or "rate")
    window.show()
    try:
        if screenshot:
            timeout = float(getattr(args, "screenshot_timeout", SCREENSHOT_TIMEOUT_S))
            return take_screenshot(window, Path(screenshot), timeout)
        return app.exec()
    finally:
        window.rate_panel.shutdown()
        window.close()
        stop_background_work()
        ctx.close()
        window.deleteLater()


def stop_background_work() -> None:
    """Cancel every Task and wait for it, at most EXIT_WAIT_S in all.

    A model load cannot be interrupted, and a thread still running when Python exits aborts the
    process; so work that outlasts the wait is abandoned with ``os._exit``. Nothing a person made
    is lost that way: every rating is committed when it is made, and checkpoints are written to a
    temp folder and renamed, so an abandoned save leaves no half-written one.
    """
    left = stop_all(timeout_s=5.0)
    if left:
        names = ", ".join(sorted({t.name for t in left}))
        print(f"waiting for background work ({names}) to finish…", file=sys.stderr)
        left = stop_all(timeout_s=EXIT_WAIT_S - 5.0)
    if left:
        names = ", ".join(sorted({t.name for t in left}))
        print(
            f"background work ({names}) did not stop within {EXIT_WAIT_S:.0f} s; quitting "
            "without it (everything already written to the project file is kept).",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(0)


def take_screenshot(window: MainWindow, path: Path, timeout_s: float) -> int:
    """Wait for the current tab's real content, then save the window as a PNG."""
    loop = QEventLoop()
    outcome = {"ok": False, "why": f"the content was not ready after {timeout_s:.0f} s"}

    def finish(ok: bool, why: str = "") -> None:
        if loop.isRunning():
            outcome.update(ok=ok, why=why or outcome["why"])
            loop.quit()

    panel, tab = window.rate_panel, window.tabs.currentWidget()
    if tab is panel:
        text_seen = False

        def first_text() -> None:
            """Say once when the first words an annotator can read are on screen (a new
            project's first item may still be being written)."""
            nonlocal text_seen
            preview = panel.feeder.preview
            if not text_seen and (panel.item is not None or preview and any(preview[1])):
                text_seen = True
                print("screenshot: first text on screen", flush=True)

        panel.feeder.changed.connect(first_text)
        panel.item_shown.connect(first_text)
        first_text()
        panel.ready.connect(lambda: finish(True))
        panel.stalled.connect(lambda why: finish(False, f"no item could be prepared: {why}"))
        if panel._ready_sent:
            QTimer.singleShot(0, lambda: finish(True))
    else:
        poll = QTimer(window)
        poll.timeout.connect(
            lambda: finish(True) if getattr(tab, "is_ready", lambda: True)() else None
        )
        poll.start(250)
    QTimer.singleShot(int(timeout_s * 1000), lambda: finish(False))
    loop.exec()
    settle = QEventLoop()
    QTimer.singleShot(150, settle.quit)  # let the last layout pass and repaint happen
    settle.exec()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not window.grab().save(str(path)):
        print(f"error: could not write the screenshot to {path}", file=sys.stderr)
        return 1
    if not outcome["ok"]:
        text = " ".join(outcome["why"].replace("<br>", " ").split())
        print(f"screenshot: {text}; saved what was shown to {path}", file=sys.stderr)
        return 1
    print(f"screenshot saved to {path}")
    return 0
