"""Where a :class:`~implicit_viz.core.errors.SpecError` lies in a spec's TOML text. No Qt.

Core reports positions inside an expression relative to the (stripped) expression string; the
editor needs them as lines and columns of the whole text. :func:`locate_error` scans the TOML
just enough to find the string that holds the field (``f = "..."``, a key of ``[define]``,
basic, literal and multi-line strings, escapes) and maps the position through it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from implicit_viz.core.errors import SpecError


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
