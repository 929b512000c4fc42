"""Before the window opens: is there a screen Qt can use? One clear message instead of Qt's abort.

On Linux, Qt's default platform plugin (xcb) needs an X display and a few system libraries; when
either is missing Qt prints "no Qt platform plugin could be initialized" and aborts the process.
This check finds out first, cheaply: the display from the environment, the plugin's libraries by
loading it (the loader names the first missing library), and the X server by connecting once.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path

from core.errors import UserError

# The Debian/Ubuntu packages Qt's xcb plugin needs beyond a desktop's usual ones.
XCB_PACKAGES = (
    "libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 "
    "libxcb-render-util0 libxcb-shape0 libegl1"
)
HEADLESS_HINT = (
    "Run the app in a desktop session, use the command line (python main.py --help), or render "
    "a screenshot offscreen (QT_QPA_PLATFORM=offscreen python main.py gui --screenshot OUT.png)."
)


class DisplayError(UserError):
    """The app cannot open a window here; the message says what is missing and what to do."""


def check_display(environ: dict[str, str] | None = None) -> None:
    """Raise ``DisplayError`` when Qt could not open a window on this Linux machine."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux"):
        return
    platform = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    if platform and platform != "xcb":
        return  # offscreen, wayland, vnc...: Qt reports its own problems for those
    if not platform and env.get("WAYLAND_DISPLAY"):
        return  # Qt picks its Wayland plugin there
    display = env.get("DISPLAY", "")
    if not display:
        raise DisplayError(
            "no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            + HEADLESS_HINT
        )
    missing = _missing_xcb_library()
    if missing:
        raise DisplayError(
            f"Qt's X11 plugin cannot load: the system library {missing} is missing. Install the "
            f"packages it needs (Debian/Ubuntu: sudo apt install {XCB_PACKAGES}), then start "
            "again. " + HEADLESS_HINT
        )
    if not _x_server_answers(display):
        raise DisplayError(
            f"the X display {display!r} (DISPLAY) does not answer. Check that the desktop "
            "session (or X forwarding) is running. " + HEADLESS_HINT
        )


def _xcb_plugin() -> Path | None:
    import PySide6

    path = Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    return path if path.exists() else None


def _missing_xcb_library() -> str | None:
    """The first library the xcb plugin cannot load, or None when it loads."""
    plugin = _xcb_plugin()
    if plugin is None:
        return None  # a Qt without the plugin: Qt itself says so
    try:
        ctypes.CDLL(str(plugin))
    except OSError as e:
        found = re.search(r"([\w.+-]+\.so[\w.]*): cannot open", str(e))
        return found.group(1) if found else str(e)
    return None


def _x_server_answers(display: str) -> bool:
    """Whether an X server accepts a connection on ``display`` (libxcb loaded with the plugin)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return True  # cannot check; let Qt try
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    conn = xcb.xcb_connect(display.encode(), None)
    try:
        return xcb.xcb_connection_has_error(conn) == 0
    finally:
        xcb.xcb_disconnect(conn)
