"""The spec editor: TOML text with colours and line numbers, checked while the user types.

The check (:func:`~implicit_viz.core.spec.parse_spec`, then
:func:`~implicit_viz.core.problem.compile_spec` on the CPU in float64) runs 200 ms after the last
keystroke. It never touches the text: a good spec is announced with ``specAccepted``, a bad one
with ``specRejected``, a red line under the editor and a wavy underline at the place named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

from implicit_viz.core.errors import SpecError
from implicit_viz.core.spec import Spec, parse_spec
from implicit_viz.gui.highlighter import SpecHighlighter

MAX_SPEC_CHARS = 200_000
CHECK_DELAY_MS = 200
TAB_WIDTH = 4
ERROR_COLOR = "#b00020"


#: Specs whose tensors hold more entries than this are only parsed on the GUI thread; the
#: trial compile (which draws and normalises the tensors) is left to the solve worker.
MAX_CHECK_ENTRIES = 1_000_000


def check_spec_text(text: str) -> Spec:
    """Parse and compile (CPU, float64) a spec text; raises :class:`SpecError` if it is bad.

    Large specs (tensors over :data:`MAX_CHECK_ENTRIES` entries) are parsed only, so typing never
    freezes the window; their compile errors come back from the solve instead.
    """
    if len(text) > MAX_SPEC_CHARS:
        raise SpecError(
            f"the spec is {len(text):,} characters long, over the limit of {MAX_SPEC_CHARS:,}: "
            "it was not checked"
        )
    spec = parse_spec(text)
    if sum(t.size for t in spec.tensors) > MAX_CHECK_ENTRIES:
        return spec
    from implicit_viz.core.problem import compile_spec  # imports torch: only when needed

    compile_spec(spec, device="cpu", dtype="float64")
    return spec


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


# --------------------------------------------------------------------------------------------
# Where an error lies in the TOML text
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorPlace:
    """An error's place in the editor: 1-based line and column (characters).

    ``whole_line`` marks an error about a whole entry; the column is then the key's.
    """

    line: int
    column: int
    whole_line: bool = False


def locate_error(text: str, err: SpecError) -> ErrorPlace | None:
    """Where ``err`` lies in the spec text ``text``, or None when that cannot be told.

    TOML errors carry their position. An expression error's position (inside ``f`` or a
    ``[define]`` entry) is mapped through the string literal that holds the expression, escapes
    and multi-line strings included. Other field errors point at the field's key.
    """
    if err.field == "toml":
        if err.line is None:
            return None
        return ErrorPlace(err.line, err.column or 1, whole_line=err.column is None)
    if not err.field:
        return None
    try:
        scan = _TomlScanner(text).scan()
    except (_ScanError, IndexError, ValueError, KeyError):
        return None
    entry = scan.entries.get(err.field)
    if entry is not None and entry.string is not None and err.line is not None:
        offset = _expression_offset(entry.string, err)
        if offset is not None:
            return ErrorPlace(*_line_col(text, offset))
    field = err.field
    while field:  # the entry itself, else the closest table or key above it
        pos = scan.entries[field].key_pos if field in scan.entries else scan.headers.get(field)
        if pos is not None:
            return ErrorPlace(*_line_col(text, pos), whole_line=True)
        field = field.rpartition(".")[0]
    return None


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _expression_offset(s: _TomlString, err: SpecError) -> int | None:
    """The text offset of ``err``'s (line, column) inside the expression held by ``s``.

    Core strips the expression before parsing, so positions count from its first non-blank.
    """
    value = s.value
    expr = err.source if err.source is not None else value.strip()
    lead = value.find(expr) if expr else -1
    if lead < 0:
        lead = len(value) - len(value.lstrip())
    lines = _NEWLINE.split(expr)
    starts = [0, *(m.end() for m in _NEWLINE.finditer(expr))]
    if err.line is None or not 1 <= err.line <= len(lines):
        return None
    column = min(max((err.column or 1) - 1, 0), len(lines[err.line - 1]))
    k = lead + starts[err.line - 1] + column
    return s.offsets[k] if k < len(s.offsets) else s.close


@dataclass(frozen=True)
class _TomlString:
    value: str  # the decoded string
    offsets: tuple[int, ...]  # text offset of each character of value
    close: int  # text offset of the closing delimiter


@dataclass(frozen=True)
class _Entry:
    key_pos: int
    string: _TomlString | None


class _ScanError(ValueError):
    pass


_ESCAPES = {
    "b": "\b",
    "t": "\t",
    "n": "\n",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    '"': '"',
    "\\": "\\",
}
_HEX_ESCAPES = {"u": 4, "U": 8, "x": 2}


class _TomlScanner:
    """Finds where each key, table header and string value lies in a *valid* TOML text.

    Entries are keyed by their dotted path (``"define.h"``, ``"params.a.value"``).
    """

    _BARE = re.compile(r"[A-Za-z0-9_-]+")
    _SCALAR = re.compile(r"[^,\]}#\n]+")

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.entries: dict[str, _Entry] = {}
        self.headers: dict[str, int] = {}

    def scan(self) -> _TomlScanner:
        table: tuple[str, ...] = ()
        while True:
            self._skip(newlines=True)
            if self.i >= len(self.text):
                return self
            if self.text[self.i] == "[":
                start = self.i
                double = self.text.startswith("[[", self.i)
                self.i += 2 if double else 1
                table = self._key()
                self._expect("]]" if double else "]")
                self.headers.setdefault(".".join(table), start)
            else:
                self._keyval(table)

    def _peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def _expect(self, s: str) -> None:
        self._skip()
        if not self.text.startswith(s, self.i):
            raise _ScanError(f"expected {s!r} at {self.i}")
        self.i += len(s)

    def _skip(self, *, newlines: bool = False) -> None:
        t = self.text
        while self.i < len(t):
            c = t[self.i]
            if c in " \t" or (newlines and c in "\r\n"):
                self.i += 1
            elif newlines and c == "#":
                end = t.find("\n", self.i)
                self.i = len(t) if end < 0 else end
            else:
                return

    def _key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self._skip()
            if self._peek() in ('"', "'"):
                parts.append(self._string().value)
            else:
                m = self._BARE.match(self.text, self.i)
                if m is None:
                    raise _ScanError(f"expected a key at {self.i}")
                parts.append(m.group())
                self.i = m.end()
            self._skip()
            if self._peek() != ".":
                return tuple(parts)
            self.i += 1

    def _keyval(self, prefix: tuple[str, ...]) -> None:
        start = self.i
        path = prefix + self._key()
        self._expect("=")
        self._skip()
        string = self._value(path)
        self.entries.setdefault(".".join(path), _Entry(start, string))

    def _value(self, path: tuple[str, ...]) -> _TomlString | None:
        c = self._peek()
        if c in ('"', "'"):
            return self._string()
        if c == "[":
            self.i += 1
            while True:
                self._skip(newlines=True)
                if self._peek() == "]":
                    self.i += 1
                    return None
                self._value(path)
                self._skip(newlines=True)
                if self._peek() == ",":
                    self.i += 1
                elif self._peek() != "]":
                    raise _ScanError(f"bad array at {self.i}")
        if c == "{":
            self.i += 1
            self._skip()
            if self._peek() == "}":
                self.i += 1
                return None
            while True:
                self._keyval(path)
                self._skip()
                c = self._peek()
                self.i += 1
                if c == "}":
                    return None
                if c != ",":
                    raise _ScanError(f"bad inline table at {self.i}")
        m = self._SCALAR.match(self.text, self.i)
        if m is None:
            raise _ScanError(f"expected a value at {self.i}")
        self.i = m.end()
        return None

    def _string(self) -> _TomlString:
        t, i = self.text, self.i
        q = t[i]
        multi = t.startswith(q * 3, i)
        i += 3 if multi else 1
        if multi and t.startswith("\r\n", i):
            i += 2
        elif multi and t.startswith("\n", i):
            i += 1
        chars: list[str] = []
        offsets: list[int] = []
        while i < len(t):
            c = t[i]
            if c == q and (not multi or t.startswith(q * 3, i)):
                run = 1
                if multi:  # up to two quotes just before the closing ones belong to the string
                    run = 3
                    while run < 5 and t.startswith(q, i + run):
                        run += 1
                    for k in range(run - 3):
                        chars.append(q)
                        offsets.append(i + k)
                close = i + run - (3 if multi else 1)
                self.i = i + run
                return _TomlString("".join(chars), tuple(offsets), close)
            if c == "\\" and q == '"':
                i = self._escape(i, multi, chars, offsets)
            elif c == "\n" and not multi:
                raise _ScanError(f"unterminated string at {i}")
            else:
                chars.append(c)
                offsets.append(i)
                i += 1
        raise _ScanError("unterminated string")

    def _escape(self, i: int, multi: bool, chars: list[str], offsets: list[int]) -> int:
        """Decode the escape at ``i``; returns the offset after it."""
        t = self.text
        nxt = t[i + 1]
        if multi and nxt in " \t\r\n":  # line-ending backslash: drop the blanks that follow
            j = i + 1
            while j < len(t) and t[j] in " \t":
                j += 1
            if j >= len(t) or t[j] not in "\r\n":
                raise _ScanError(f"bad escape at {i}")
            while j < len(t) and t[j] in " \t\r\n":
                j += 1
            return j
        if nxt in _HEX_ESCAPES:
            n = _HEX_ESCAPES[nxt]
            chars.append(chr(int(t[i + 2 : i + 2 + n], 16)))
            width = 2 + n
        else:
            chars.append(_ESCAPES[nxt])
            width = 2
        offsets.append(i)
        return i + width
