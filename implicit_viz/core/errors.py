"""Errors the backend raises on bad user input. Torch-free, so the CLI can import them cheaply."""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class SpecError(ValueError):
    """A spec (file, expression, value or override) is invalid.

    Attributes
    ----------
    message : str
        What is wrong, in one sentence.
    field : str or None
        Where in the spec: ``"f"``, ``"define.h"``, ``"params.a"``, ``"tensors.W"``, ``"toml"``.
    line, column : int or None
        1-based position inside the expression (or inside the TOML text for ``field="toml"``).
    source : str or None
        The text the position refers to, for a caret display.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        line: int | None = None,
        column: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.line = line
        self.column = column
        self.source = source
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """``"f: unknown name 'q' (line 1, column 6)"``."""
        where = f"{self.field}: " if self.field else ""
        pos = ""
        if self.line is not None and self.column is not None:
            pos = f" (line {self.line}, column {self.column})"
        elif self.line is not None:
            pos = f" (line {self.line})"
        return f"{where}{self.message}{pos}"

    def pretty(self) -> str:
        """The one-line message followed by the offending line and a caret under the column."""
        text = self.one_line()
        if self.source is None or self.line is None:
            return text
        lines = self.source.splitlines() or [""]
        if not 1 <= self.line <= len(lines):
            return text
        src = lines[self.line - 1]
        caret = " " * max((self.column or 1) - 1, 0) + "^"
        return f"{text}\n    {src}\n    {caret}"

    def with_field(self, field: str) -> SpecError:
        """A copy of this error that names ``field`` (kept if already set)."""
        return SpecError(
            self.message,
            field=self.field or field,
            line=self.line,
            column=self.column,
            source=self.source,
        )


class SolverError(ValueError):
    """A solver was asked for by an unknown name or with invalid options."""


class SweepError(ValueError):
    """A sweep request is impossible (empty range, zero resolution, budget too small, ...)."""


class LimitError(ValueError):
    """A request would exceed a resource budget (memory, compute, file size) of
    :mod:`implicit_viz.core.limits`. Raised *before* anything is allocated or computed.

    Attributes
    ----------
    message : str
        What would be needed and what the limit is, in one sentence.
    field : str or None
        What the user set that asks for it: ``"anderson.m"``, ``"tensors.W"``, ``"--memory-mb"``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class Cancelled(Exception):
    """Long work (the gradient lab) was stopped by its caller's ``cancel`` callback."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


def unknown_name(kind: str, name: str, known: Sequence[str]) -> SolverError:
    """:class:`SolverError` ``"unknown KIND 'name'; known: a, b. Did you mean 'a'?"`` for a
    registry lookup that failed (solvers, gradient methods)."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return SolverError(f"unknown {kind} '{name}'; known: {', '.join(known)}.{hint}")
