"""Syntax colours for spec TOML, with the expression strings (``f``, ``[define]``) coloured inside.

Block state (an int carried from line to line) remembers an open multi-line string and the
current section, so that ``notes = \"\"\"...\"\"\"`` and multi-line expressions colour correctly::

    bits 0-1  open string: 0 none, 1 basic (\"\"\"), 2 literal (''')
    bit  2    the open string is an expression
    bits 3-4  section: 0 top level, 1 [define], 2 any other table
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument

from implicit_viz.core.expr import CONSTANTS, FUNCTIONS

_ROOT, _DEFINE, _OTHER = 0, 1, 2
_NO_STRING, _BASIC, _LITERAL = 0, 1, 2
_DELIM = {_BASIC: '"""', _LITERAL: "'''"}

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""


def _fmt(color: str, *, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    f = QTextCharFormat()
    f.setForeground(QColor(color))
    if bold:
        f.setFontWeight(QFont.Weight.Bold)
    if italic:
        f.setFontItalic(True)
    return f


def _words(names: Iterable[str]) -> str:
    """An alternation of ``names``, longest first."""
    return "|".join(sorted(map(re.escape, names), key=len, reverse=True))


class SpecHighlighter(QSyntaxHighlighter):
    """Colours a spec's TOML: comments, headers, keys, strings, numbers, booleans, expressions."""

    HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]#]*?)\s*\]\]?")
    KEY = re.compile(rf"^\s*(?P<key>{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")
    TOKEN = re.compile(
        r"""
        (?P<tclosed>\"\"\"(?:[^\\]|\\.)*?\"\"\"\"{0,2})
        | (?P<topen>\"\"\".*$)
        | (?P<lclosed>'''.*?''''{0,2})
        | (?P<lopen>'''.*$)
        | (?P<str>"(?:[^"\\]|\\.)*"?)
        | (?P<lit>'[^']*'?)
        | (?P<comment>\#.*$)
        | (?P<ikey>(?<=[{,])\s*[A-Za-z0-9_-]+(?=\s*=))
        | (?P<bool>\b(?:true|false)\b)
        | (?P<num>(?<![\w.])[+-]?(?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|inf|nan
              |\d[\d_]*(?:\.[\d_]+)?(?:[eE][+-]?\d[\d_]*)?)(?![\w.]))
        """,
        re.VERBOSE,
    )
    EXPR = re.compile(
        rf"""
        (?P<func>\b(?:{_words(FUNCTIONS)})\b)
        | (?P<var>\bz\b)
        | (?P<const>\b(?:{_words(CONSTANTS)})\b)
        | (?P<num>(?<![\w.])(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
        | (?P<op>\*\*|[-+*/@%<>=!]=?)
        """,
        re.VERBOSE,
    )

    def __init__(self, document: QTextDocument | None = None) -> None:
        super().__init__(document)
        self.formats: dict[str, QTextCharFormat] = {
            "comment": _fmt("#8a8a8a", italic=True),
            "header": _fmt("#1f4e99", bold=True),
            "key": _fmt("#7b3f98"),
            "string": _fmt("#2e7d32"),
            "number": _fmt("#b35c00"),
            "bool": _fmt("#b35c00", bold=True),
            "expr": _fmt("#263238"),
            "func": _fmt("#1565c0", bold=True),
            "var": _fmt("#00838f", bold=True),
            "const": _fmt("#6a1b9a"),
            "op": _fmt("#9e9e9e"),
        }

    # QSyntaxHighlighter ---------------------------------------------------------------------
    def highlightBlock(self, text: str) -> None:
        prev = max(self.previousBlockState(), 0)
        open_kind, open_expr, section = prev & 3, bool(prev & 4), (prev >> 3) & 3
        pos, expr_value = 0, False
        if open_kind != _NO_STRING:
            end = self._find_close(text, 0, _DELIM[open_kind])
            if end < 0:
                self._string(text, 0, len(text), open_expr, open_len=0, close_len=0)
                self.setCurrentBlockState(prev)
                return
            self._string(text, 0, end, open_expr, open_len=0, close_len=3)
            pos = end
        elif m := self.HEADER.match(text):
            name = m.group("name").strip().strip("\"'")
            section = _DEFINE if name == "define" else _OTHER
            self.setFormat(0, m.end(), self.formats["header"])
            pos = m.end()
        elif m := self.KEY.match(text):
            key = re.sub(r"\s+", "", m.group("key"))
            self.setFormat(m.start("key"), len(m.group("key")), self.formats["key"])
            pos = m.end()
            expr_value = section == _DEFINE or (
                section == _ROOT and (key == "f" or key.startswith("define."))
            )
        state = self._scan(text, pos, expr_value=expr_value)
        self.setCurrentBlockState(state | (section << 3))

    # helpers --------------------------------------------------------------------------------
    def _scan(self, text: str, pos: int, *, expr_value: bool) -> int:
        """Colour ``text[pos:]``; returns the open-string bits for the next line.

        With ``expr_value``, a string that starts the value is coloured as an expression.
        """
        expr_value = expr_value and text[pos:].lstrip().startswith(('"', "'"))
        for i, m in enumerate(self.TOKEN.finditer(text, pos)):
            kind = m.lastgroup or "string"
            start, end = m.span()
            expr = expr_value and i == 0
            if kind in ("tclosed", "lclosed"):
                self._string(text, start, end, expr, open_len=3, close_len=3)
            elif kind in ("topen", "lopen"):
                self._string(text, start, end, expr, open_len=3, close_len=0)
                return (_BASIC if kind == "topen" else _LITERAL) | (4 if expr else 0)
            elif kind in ("str", "lit"):
                closed = end - start >= 2 and text[end - 1] == text[start]
                self._string(text, start, end, expr, open_len=1, close_len=int(closed))
            else:
                name = {"ikey": "key", "num": "number"}.get(kind, kind)
                self.setFormat(start, end - start, self.formats[name])
        return _NO_STRING

    def _string(
        self, text: str, start: int, end: int, expr: bool, *, open_len: int, close_len: int
    ) -> None:
        """Colour a string token ``text[start:end]``; an expression's inside gets its colours."""
        self.setFormat(start, end - start, self.formats["string"])
        if expr:
            self._expression(text, start + open_len, max(start + open_len, end - close_len))

    def _expression(self, text: str, start: int, end: int) -> None:
        self.setFormat(start, end - start, self.formats["expr"])
        for m in self.EXPR.finditer(text, start, end):
            name = {"num": "number"}.get(m.lastgroup or "expr", m.lastgroup or "expr")
            self.setFormat(m.start(), m.end() - m.start(), self.formats[name])

    @staticmethod
    def _find_close(text: str, pos: int, delim: str) -> int:
        """Index just past the closing ``delim`` (with up to 2 extra quotes), or -1."""
        i = pos
        while True:
            j = text.find(delim, i)
            if j < 0:
                return -1
            if delim == '"""' and j > 0 and _escaped(text, j):
                i = j + 1
                continue
            k = j + 3
            while k < len(text) and k < j + 5 and text[k] == delim[0]:
                k += 1
            return k


def _escaped(text: str, j: int) -> bool:
    """Whether ``text[j]`` is preceded by an odd number of backslashes."""
    n = 0
    while j - n - 1 >= 0 and text[j - n - 1] == "\\":
        n += 1
    return n % 2 == 1
