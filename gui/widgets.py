"""Small widgets the rating panel is built from: Markdown views, response cards, the shortcut sheet.

``SHORTCUTS`` is the one table of keys: the shortcut sheet shows it, the button labels follow it,
and docs/shortcuts.md is checked against it by a test.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QFont, QTextCursor, QTextDocument, QTextFormat
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from gui.fonts import with_cjk_fallback

SHORTCUTS: list[tuple[str, str, str]] = [
    ("score", "1 – 5", "rate the focused criterion and move to the next"),
    ("score", "Tab / Shift+Tab", "next / previous criterion"),
    ("score", "Enter", "submit the scores"),
    ("pairwise", "A", "A is better"),
    ("pairwise", "B", "B is better"),
    ("pairwise", "T", "tie"),
    ("pairwise", "N", "both are bad"),
    ("rank", "1 – K", "pick the next best response"),
    ("rank", "Backspace", "take back the last pick"),
    ("rank", "Enter", "submit the ranking"),
    ("arena", "A / B / T / N", "as pairwise: A better, B better, tie, both bad"),
    ("thumbs", "U", "thumbs up"),
    ("thumbs", "D", "thumbs down"),
    ("all", "S", "skip (not shown to you again)"),
    ("all", "F", "flag, then 1 – 5 for the reason (Esc cancels)"),
    ("all", "E", "rewrite a response; Ctrl+Enter saves, Esc cancels"),
    ("all", "C", "comment (Enter or Esc returns to rating)"),
    ("all", "Ctrl+Z", "undo the last rating (the item comes back)"),
    ("all", "Ctrl+Shift+Z", "redo"),
    ("all", "G", "show or hide the guidelines"),
    ("all", "PgUp / PgDn", "scroll the responses"),
    ("all", "?", "this shortcut sheet"),
]

MARKDOWN = (
    QTextDocument.MarkdownFeature.MarkdownDialectGitHub
    | QTextDocument.MarkdownFeature.MarkdownNoHTML
)


CODE_BACKGROUND = QColor("#f0f0f0")


class MarkdownView(QTextBrowser):
    """Read-only Markdown (code blocks, lists, tables); raw HTML is shown as text, links inert."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFont(with_cjk_fallback(self.font()))
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the rating panel
        self.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.LinksAccessibleByMouse
        )
        self.document().setDocumentMargin(8)

    def show_markdown(self, text: str) -> None:
        doc = self.document()
        doc.setMarkdown(text, MARKDOWN)
        if _may_have_code(text):
            _shade_code_blocks(doc)
        self._to_top()

    def show_document(self, doc: QTextDocument) -> None:
        """Show a document built (and laid out) ahead of time by a DocumentCache."""
        self.setDocument(doc)
        self._to_top()

    def _to_top(self) -> None:
        self.moveCursor(QTextCursor.MoveOperation.Start)  # else a resize scrolls to the end
        self.verticalScrollBar().setValue(0)

    def content_height(self) -> int:
        """Pixels the text needs at the current width (the prompt view sizes itself by it)."""
        return int(self.document().size().height()) + 2 * self.frameWidth() + 4

    def scroll_pages(self, pages: int) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.value() + pages * bar.pageStep())


def _may_have_code(text: str) -> bool:
    return "```" in text or "~~~" in text or "\n    " in text or "\n\t" in text


class DocumentCache(QObject):
    """Markdown documents built before they are needed (while the annotator reads the current
    item), so showing the next item swaps documents instead of parsing and laying out text."""

    def __init__(self, font: QFont, parent: QObject | None = None):
        super().__init__(parent)
        self.font = font
        self._docs: dict[tuple[str, int, str], QTextDocument] = {}

    def get(self, slot: str, index: int, text: str) -> QTextDocument:
        key = (slot, index, text)
        doc = self._docs.get(key)
        if doc is None:
            doc = QTextDocument(self)
            doc.setDefaultFont(self.font)
            doc.setDocumentMargin(8)
            doc.setMarkdown(text, MARKDOWN)
            if _may_have_code(text):
                _shade_code_blocks(doc)
            self._docs[key] = doc
        return doc

    def prepare(self, slot: str, index: int, text: str, width: float) -> None:
        doc = self.get(slot, index, text)
        if width > 0:
            doc.setTextWidth(width)
            doc.size()  # lays the document out now rather than at the next paint

    def keep(self, keys: set[tuple[str, int, str]]) -> None:
        """Drop every document not in ``keys`` (the item on screen and the next one)."""
        for key in [k for k in self._docs if k not in keys]:
            self._docs.pop(key).deleteLater()


def _shade_code_blocks(doc: QTextDocument) -> None:
    """Give fenced and indented code blocks a background, as every Markdown viewer does."""
    block = doc.begin()
    cursor = None
    while block.isValid():
        fmt = block.blockFormat()
        if fmt.hasProperty(QTextFormat.Property.BlockCodeFence) or fmt.nonBreakableLines():
            cursor = cursor or QTextCursor(doc)
            cursor.setPosition(block.position())
            fmt.setBackground(CODE_BACKGROUND)
            cursor.setBlockFormat(fmt)
        block = block.next()


class ResponseCard(QFrame):
    """One response under its label (A, B, 1, 2, ...); the label never names the model."""

    def __init__(self, label: str, text: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("responseCard")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.label = label
        self._selected = False
        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.view = MarkdownView()
        self.view.show_markdown(text)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(2)
        lay.addWidget(self.header)
        lay.addWidget(self.view, 1)
        self.set_badge("")

    def set_badge(self, badge: str, selected: bool = False) -> None:
        extra = f" &nbsp;<span style='color:#1a7f37'>{badge}</span>" if badge else ""
        name = f"Response {self.label}" if self.label else "Response"
        self.header.setText(f"<b>{name}</b>{extra}")
        if selected != self._selected:  # a style sheet change restyles the card: only on change
            self._selected = selected
            self.setStyleSheet("#responseCard { border: 2px solid #1a7f37; }" if selected else "")


class ResponseGrid(QWidget):
    """The responses of one item: side by side up to three, else two columns. Cards are reused
    from item to item, so showing the next item only replaces text."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.cards: list[ResponseCard] = []
        self.shown = 0

    def show_responses(self, labels: list[str], texts: list[str], cache: DocumentCache) -> None:
        while len(self.cards) < len(texts):
            self.cards.append(ResponseCard("", ""))
        if len(texts) != self.shown:  # lay the cards out again only when their number changes
            for card in self.cards:
                self.grid.removeWidget(card)
                card.hide()
                card.view.setDocument(QTextDocument(card.view))  # let the cache drop the old one
            columns = len(texts) if len(texts) <= 3 else 2
            for i in range(len(texts)):
                self.grid.addWidget(self.cards[i], i // columns, i % columns)
                self.cards[i].show()
            self.shown = len(texts)
        for i, (label, text) in enumerate(zip(labels, texts, strict=True)):
            card = self.cards[i]
            card.label = label
            card.set_badge("")
            card.view.show_document(cache.get("response", i, text))

    def text_width(self, count: int) -> float:
        """The width a response's text gets when ``count`` responses are shown (0: unknown)."""
        if count != self.shown or not self.cards:
            return 0
        return self.cards[0].view.viewport().width()

    def mark_places(self, order: list[int]) -> None:
        """Badge #1, #2, ... on the responses picked so far (rank mode)."""
        for i, card in enumerate(self.cards[: self.shown]):
            if i in order:
                card.set_badge(f"#{order.index(i) + 1}", selected=True)
            else:
                card.set_badge("")

    def scroll_pages(self, pages: int) -> None:
        for card in self.cards[: self.shown]:
            card.view.scroll_pages(pages)


class EmptyState(QWidget):
    """What the Rate tab shows with no item on screen: why, and what to do about it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.import_button = QPushButton("Import the starter prompts")
        self.settings_button = QPushButton("Settings…")
        for b in (self.import_button, self.settings_button):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.import_button)
        row.addWidget(self.settings_button)
        row.addStretch(1)
        # the first item's responses while the model writes them (read-only, not yet rateable)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.preview.setTextFormat(Qt.TextFormat.RichText)
        self.preview.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.preview.hide()
        lay = QVBoxLayout(self)
        lay.addStretch(1)
        lay.addWidget(self.text)
        lay.addWidget(self.preview, 4)
        lay.addLayout(row)
        lay.addStretch(2)

    def show_state(
        self,
        *,
        prompt_count: int | None,
        busy: bool,
        loading_model: bool,
        model_error: str | None,
        can_import: bool,
        preview: tuple[str, list[str]] | None = None,
        load_stage: str | None = None,
    ) -> None:
        self.import_button.setVisible(can_import)
        shown = busy and preview is not None
        self.preview.setVisible(shown)
        if shown:
            prompt, texts = preview
            self.text.setText(
                "<h3>Writing the first item…</h3>You can rate it as soon as it is written."
            )
            self.preview.setText(preview_html(prompt, texts))
            return
        if prompt_count is None:
            text = "<h3>Preparing items…</h3>"
        elif prompt_count == 0:
            text = (
                "<h3>This project has no prompts yet</h3>Import prompts in the Data tab, or "
                "with <code>python main.py --db FILE prompts import prompts.jsonl</code>"
                + (", or start with the starter prompts:" if can_import else ".")
            )
        elif busy:
            if loading_model:
                what = html.escape(load_stage) if load_stage else "Loading the model…"
            else:
                what = "Generating responses…"
            text = f"<h3>Preparing items…</h3>{what}<br>The next item appears here by itself."
        elif model_error:
            text = (
                "<h3>No more items for you</h3>You have rated every response in this "
                "project, and no model is loaded to generate more:<br><br>"
                f"{html.escape(model_error)}<br><br>Choose another model in Settings."
            )
        else:
            text = (
                "<h3>No more items for you</h3>You have rated every item this project "
                "has in this mode. Try another mode, or import more prompts."
            )
        self.text.setText(text)


PREVIEW_PROMPT_CHARS = 600


def preview_html(prompt: str, texts: list[str]) -> str:
    """The prompt and the responses written so far, side by side, each ending in a cursor;
    numbered, not lettered: the item shows them on sides drawn at random."""
    if len(prompt) > PREVIEW_PROMPT_CHARS:
        prompt = prompt[:PREVIEW_PROMPT_CHARS] + "…"
    cells = "".join(
        f'<td width="{100 // max(1, len(texts))}%" style="padding:8px; vertical-align:top">'
        f"<b>Response{f' {i + 1}' if len(texts) > 1 else ''}</b><br>"
        f"{html.escape(t).replace(chr(10), '<br>')}▍</td>"
        for i, t in enumerate(texts)
    )
    return (
        f"<p><b>Prompt:</b> {html.escape(prompt).replace(chr(10), '<br>')}</p>"
        f'<table width="100%"><tr>{cells}</tr></table>'
    )


def prompt_markdown(prompt: str, messages: tuple[tuple[str, str], ...] | None) -> str:
    """A chat prompt as labelled turns; a plain prompt as it is."""
    if not messages:
        return prompt
    return "\n\n".join(f"**{role.capitalize()}:** {content}" for role, content in messages)


def show_message(
    parent: QWidget | None, title: str, text: str, icon=QMessageBox.Icon.Warning
) -> QMessageBox:
    """A non-blocking message box (window-modal); returns it so callers and tests can close it."""
    box = QMessageBox(icon, title, text, QMessageBox.StandardButton.Ok, parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box


class ShortcutSheet(QDialog):
    """Every key of the rating panel (``?``)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        table = QTableWidget(len(SHORTCUTS), 3)
        table.setHorizontalHeaderLabels(["Mode", "Key", "Action"])
        for row, cells in enumerate(SHORTCUTS):
            for col, text in enumerate(cells):
                table.setItem(row, col, QTableWidgetItem(text))
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(table)
        lay.addWidget(buttons)
        self.resize(560, 620)
