"""The spec editor: TOML text with colours and line numbers, checked while the user types.

The check (:func:`~implicit_viz.core.spec.parse_spec`, then
:func:`~implicit_viz.core.compiled_map.check_spec`: shapes and costs on meta tensors, nothing
computed) runs 200 ms after the last keystroke. It never touches the text: a good spec is
announced with ``specAccepted``, a bad one with ``specRejected``, a red line under the editor
and a wavy underline at the place named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import QRect, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QKeyEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QTextBlock,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QTextEdit, QVBoxLayout, QWidget

from implicit_viz.core.error_place import ErrorPlace, locate_error
from implicit_viz.core.errors import LimitError, SpecError
from implicit_viz.core.spec import Spec, parse_spec
from implicit_viz.gui.highlighter import SpecHighlighter

MAX_SPEC_CHARS = 200_000
CHECK_DELAY_MS = 200
TAB_WIDTH = 4
ERROR_COLOR = "#b00020"


def check_spec_text(text: str) -> Spec:
    """Parse and check a spec text; raises :class:`SpecError` if it is bad (a resource limit
    too, as a :class:`SpecError` naming the same field).

    The check (:func:`~implicit_viz.core.compiled_map.check_spec`) evaluates ``f`` on meta tensors:
    shapes and costs are checked without drawing a tensor or computing a product, so a keystroke
    costs milliseconds whatever the sizes. Errors that depend on values come back from the solve.
    """
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(
            f"the spec is {len(text):,} characters long, over the limit of {MAX_SPEC_CHARS:,}: "
            "it was not checked"
        )
    spec = parse_spec(text)
    from implicit_viz.core.compiled_map import check_spec  # imports torch: only when needed

    try:
        check_spec(spec, dtype="float64")
    except LimitError as exc:
        raise SpecError(exc.message, field=exc.field) from None
    check_solver_section(spec.solver)
    return spec


def check_solver_section(solver: Mapping[str, Any]) -> None:
    """Check a spec's ``[solver]`` section as the app applies it; raises :class:`SpecError`
    naming the field (``solver.solvers``, ``solver.max_iter``, ``solver.anderson.m``, ...).

    Beyond what :func:`~implicit_viz.core.spec.parse_spec` checks: solver names must be known,
    each ``[solver.NAME]`` table must build that solver (its option names and values), and what
    the solver panel shows must lie in the panel's ranges (:meth:`SolverSettings.check`).
    """
    from implicit_viz.core.solver_settings import SettingsError, SolverSection, SolverSettings

    section = SolverSection.of(solver)
    try:
        SolverSettings.from_spec(section, SolverSettings()).check()
    except SettingsError as exc:
        raise SpecError(
            f"{exc} (the range of the app's solver panel)", field=f"solver.{exc.field}"
        ) from None


# --------------------------------------------------------------------------------------------
# The editor widget
# --------------------------------------------------------------------------------------------


class SpecEditor(QWidget):
    """A spec text editor that checks the spec while the user types.

    Signals: ``specAccepted(Spec)`` after a successful check (``spec.source`` is the text),
    ``specRejected(str)`` with the error shown, ``modificationChanged(bool)`` from the document.
    """

    specAccepted = Signal(object)
    specRejected = Signal(str)
    modificationChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.text_edit = CodeEdit(self)
        self.highlighter = SpecHighlighter(self.text_edit.document())
        self.error_label = QLabel(self)
        self.error_label.setWordWrap(True)
        self.error_label.setTextFormat(Qt.TextFormat.PlainText)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR}; padding: 2px 4px;")
        self.error_label.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.text_edit, 1)
        layout.addWidget(self.error_label)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CHECK_DELAY_MS)
        self._timer.timeout.connect(self.check_now)
        self.text_edit.textChanged.connect(self._schedule_check)
        self.text_edit.document().modificationChanged.connect(self.modificationChanged)

        self._last_good: Spec | None = None
        self._error = ""
        self._error_pos: tuple[int, int] | None = None

    # text -----------------------------------------------------------------------------------
    def text(self) -> str:
        """The text in the editor."""
        return self.text_edit.toPlainText()

    def set_text(self, text: str, *, undoable: bool = True) -> None:
        """Replace the whole text; with ``undoable`` it is one edit that Ctrl+Z takes back.

        Line endings are normalised to ``\\n``. The check follows after the usual delay.
        """
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not undoable:
            self.text_edit.setPlainText(text)
            return
        cursor = QTextCursor(self.text_edit.document())
        cursor.beginEditBlock()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(text)
        cursor.endEditBlock()
        cursor.movePosition(QTextCursor.MoveOperation.Start)
        self.text_edit.setTextCursor(cursor)

    def is_modified(self) -> bool:
        """The document's modified flag."""
        return self.text_edit.document().isModified()

    def set_modified(self, modified: bool) -> None:
        """Set the document's modified flag (e.g. False after saving)."""
        self.text_edit.document().setModified(modified)

    # checking -------------------------------------------------------------------------------
    def last_good_spec(self) -> Spec | None:
        """The last spec accepted, kept while the text is invalid; None before the first."""
        return self._last_good

    def error_message(self) -> str:
        """The error shown under the editor, '' when the spec is valid."""
        return self._error

    def error_position(self) -> tuple[int, int] | None:
        """Editor (line, column), 1-based, of the current error; None if it has no place.

        For an error that concerns a whole entry (a param's range, ``dim``), the key's position.
        """
        return self._error_pos

    def check_now(self) -> Spec | None:
        """Check the text at once; returns the spec, or None (the error is then shown)."""
        self._timer.stop()
        text = self.text()
        try:
            spec = check_spec_text(text)
        except SpecError as exc:
            self._reject(text, exc)
            return None
        except Exception as exc:  # anything else must not reach Qt's event loop
            self._show_error(f"internal error while checking: {type(exc).__name__}: {exc}")
            return None
        self._last_good = spec
        self._error, self._error_pos = "", None
        self.error_label.clear()
        self.error_label.hide()
        self.text_edit.mark_error(None)
        self.specAccepted.emit(spec)
        return spec

    def _schedule_check(self) -> None:
        self._timer.start()

    def _reject(self, text: str, exc: SpecError) -> None:
        message = exc.message
        if exc.field and exc.field != "toml":
            message = f"{exc.field}: {message}"
        try:
            place = locate_error(text, exc)
        except Exception:  # a failed lookup only loses the position
            place = None
        self._show_error(message, place)

    def _show_error(self, message: str, place: ErrorPlace | None = None) -> None:
        if place is not None and not 1 <= place.line <= self.text_edit.blockCount():
            place = None
        if place is None:
            shown = message
        elif place.whole_line:
            shown = f"line {place.line}: {message}"
        else:
            shown = f"line {place.line}, column {place.column}: {message}"
        self._error = shown
        self._error_pos = None if place is None else (place.line, place.column)
        self.error_label.setText(shown)
        self.error_label.show()
        self.text_edit.mark_error(place)
        self.specRejected.emit(shown)


# --------------------------------------------------------------------------------------------
# The text edit with a line-number gutter
# --------------------------------------------------------------------------------------------


class CodeEdit(QPlainTextEdit):
    """A monospace plain-text edit with line numbers; Tab inserts spaces, Shift+Tab dedents."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.setFont(font)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * TAB_WIDTH)
        self._gutter = _Gutter(self)
        self._error_line: int | None = None
        self.blockCountChanged.connect(self._update_margin)
        self.updateRequest.connect(self._update_gutter)
        self._update_margin()

    # error mark -----------------------------------------------------------------------------
    def mark_error(self, place: ErrorPlace | None) -> None:
        """Underline the error's token (or its whole line) in red; None clears the mark."""
        self._error_line = None if place is None else place.line
        self._gutter.update()
        if place is None:
            self.setExtraSelections([])
            return
        block = self.document().findBlockByNumber(place.line - 1)
        line_sel = QTextEdit.ExtraSelection()
        line_sel.format.setBackground(QColor("#fdecea"))
        line_sel.format.setProperty(QTextFormat.Property.FullWidthSelection, True)
        line_sel.cursor = QTextCursor(block)
        selections = [line_sel]
        text = block.text()
        if place.whole_line:
            start = len(text) - len(text.lstrip())
            end = len(text.rstrip())
        else:
            start, end = _token_span(text, place.column - 1)
        if end > start:
            cursor = QTextCursor(block)
            cursor.setPosition(block.position() + _utf16_len(text[:start]))
            cursor.setPosition(
                block.position() + _utf16_len(text[:end]), QTextCursor.MoveMode.KeepAnchor
            )
            token_sel = QTextEdit.ExtraSelection()
            token_sel.format.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SpellCheckUnderline)
            token_sel.format.setUnderlineColor(QColor(ERROR_COLOR))
            token_sel.format.setBackground(QColor("#f8c8c3"))
            token_sel.cursor = cursor
            selections.append(token_sel)
        self.setExtraSelections(selections)

    # keys -----------------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        plain = mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier)
        if key == Qt.Key.Key_Tab and plain:
            self._indent()
        elif key == Qt.Key.Key_Backtab:
            self._dedent()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and (
            mods & Qt.KeyboardModifier.ShiftModifier
        ):
            self.textCursor().insertText("\n")  # a new line, never a U+2028 soft break
        else:
            super().keyPressEvent(event)

    def _selected_blocks(self) -> list[QTextBlock]:
        cursor = self.textCursor()
        doc = self.document()
        first = doc.findBlock(cursor.selectionStart())
        last = doc.findBlock(cursor.selectionEnd())
        blocks = [first]
        while blocks[-1] != last and blocks[-1].next().isValid():
            blocks.append(blocks[-1].next())
        return blocks

    def _indent(self) -> None:
        """Spaces up to the next tab stop; with several lines selected, indent them all."""
        cursor = self.textCursor()
        blocks = self._selected_blocks()
        if len(blocks) == 1:
            column = cursor.selectionStart() - blocks[0].position()
            cursor.insertText(" " * (TAB_WIDTH - column % TAB_WIDTH))
            return
        cursor.beginEditBlock()
        for block in blocks:
            QTextCursor(block).insertText(" " * TAB_WIDTH)
        cursor.endEditBlock()

    def _dedent(self) -> None:
        """Remove up to one indent of spaces from the current or selected lines."""
        cursor = self.textCursor()
        cursor.beginEditBlock()
        for block in self._selected_blocks():
            text = block.text()
            n = min(len(text) - len(text.lstrip(" ")), TAB_WIDTH)
            if n:
                edit = QTextCursor(block)
                edit.movePosition(
                    QTextCursor.MoveOperation.Right, QTextCursor.MoveMode.KeepAnchor, n
                )
                edit.removeSelectedText()
        cursor.endEditBlock()

    # gutter ---------------------------------------------------------------------------------
    def gutter_width(self) -> int:
        """Width of the line-number gutter in pixels."""
        digits = max(len(str(self.blockCount())), 2)
        return 14 + self.fontMetrics().horizontalAdvance("9") * digits

    def _update_margin(self, *_: object) -> None:
        self.setViewportMargins(self.gutter_width(), 0, 0, 0)

    def _update_gutter(self, rect: QRect, dy: int) -> None:
        if dy:
            self._gutter.scroll(0, dy)
        else:
            self._gutter.update(0, rect.y(), self._gutter.width(), rect.height())
        if rect.contains(self.viewport().rect()):
            self._update_margin()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        r = self.contentsRect()
        self._gutter.setGeometry(QRect(r.left(), r.top(), self.gutter_width(), r.height()))

    def paint_gutter(self, event: QPaintEvent) -> None:
        """Draw the line numbers of the visible blocks; the error's line in red."""
        painter = QPainter(self._gutter)
        painter.fillRect(event.rect(), QColor("#f2f2f2"))
        painter.setPen(QColor("#dddddd"))
        right = self._gutter.width() - 1
        painter.drawLine(right, event.rect().top(), right, event.rect().bottom())
        painter.setFont(self.font())
        bold = QFont(self.font())
        bold.setBold(True)
        width = self._gutter.width() - 8
        height = self.fontMetrics().height()
        block = self.firstVisibleBlock()
        top = round(self.blockBoundingGeometry(block).translated(self.contentOffset()).top())
        while block.isValid() and top <= event.rect().bottom():
            bottom = top + round(self.blockBoundingRect(block).height())
            if block.isVisible() and bottom >= event.rect().top():
                number = block.blockNumber() + 1
                is_error = number == self._error_line
                painter.setPen(QColor(ERROR_COLOR if is_error else "#9a9a9a"))
                painter.setFont(bold if is_error else self.font())
                painter.drawText(0, top, width, height, Qt.AlignmentFlag.AlignRight, str(number))
            block = block.next()
            top = bottom
        painter.end()


class _Gutter(QWidget):
    def __init__(self, edit: CodeEdit) -> None:
        super().__init__(edit)
        self._edit = edit

    def paintEvent(self, event: QPaintEvent) -> None:
        self._edit.paint_gutter(event)


_WORD = re.compile(r"\w+")


def _token_span(line: str, index: int) -> tuple[int, int]:
    """The word at ``index`` in ``line``, or that one character (the last one past the end)."""
    if not line:
        return 0, 0
    index = min(max(index, 0), len(line) - 1)
    m = _WORD.match(line, index)
    return (index, m.end()) if m else (index, index + 1)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
