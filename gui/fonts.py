"""Fonts: a CJK-capable fallback family where the system has one, so Chinese, Japanese and Korean
responses render as text rather than boxes."""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QApplication

CJK_FAMILY_HINTS = (
    "Noto Sans CJK",
    "Noto Sans SC",
    "Source Han Sans",
    "Source Han",
    "WenQuanYi",
    "Microsoft YaHei",
    "PingFang",
)


def cjk_family(families: list[str] | None = None) -> str | None:
    """The first installed family matching CJK_FAMILY_HINTS (in hint order), or None."""
    families = list(QFontDatabase.families()) if families is None else families
    for hint in CJK_FAMILY_HINTS:
        matches = sorted(f for f in families if hint.lower() in f.lower())
        # Prefer the Simplified Chinese cut when a family comes in regional variants.
        for f in matches:
            if f.endswith(" SC"):
                return f
        if matches:
            return matches[0]
    return None


def with_cjk_fallback(font: QFont) -> QFont:
    """A copy of ``font`` whose family list ends with the CJK family, when there is one."""
    cjk = cjk_family()
    out = QFont(font)
    if cjk and cjk not in font.families():
        out.setFamilies([*(font.families() or [font.family()]), cjk])
    return out


def apply_app_fonts(app: QApplication) -> str | None:
    """Give the whole application a CJK fallback; returns the family used (None: none found)."""
    app.setFont(with_cjk_fallback(app.font()))
    return cjk_family()


def monospace_font() -> QFont:
    font = with_cjk_fallback(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    return font
