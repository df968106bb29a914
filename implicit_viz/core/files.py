"""Safe file I/O: atomic writes and bounded reads. Torch-free.

:func:`atomic_write` writes to a temporary file beside the target and renames it into place, so a
failure, a full disk or a Ctrl-C (even a second one) leaves the old file as it was. A symbolic link
is written through: its target is replaced and the link stays a link. A device or FIFO
(``/dev/null``) is written directly, since there is no file to keep and none may replace it. :func:`read_text_limited`
reads a spec or session file without ever reading more than a limit, and refuses FIFOs and devices
(``/dev/zero``, a pipe) that would never end.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from implicit_viz.core.limits import MAX_INPUT_FILE_BYTES, format_bytes


class FileWriteError(OSError):
    """A file could not be written; the message names the path and the reason."""


class FileReadError(OSError):
    """A file could not be read (missing, not a regular file, too large, not text)."""


def resolve_target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` must replace: ``~`` expanded and symbolic links followed
    (a dangling link resolves to the file it names). :class:`FileWriteError` for a link that
    leads back to itself (a loop), which no write can resolve."""
    p = Path(path).expanduser()
    try:
        if not p.is_symlink():
            return p
        target = Path(os.path.realpath(p))
        if target.is_symlink():  # realpath stops where the chain of links loops
            raise FileWriteError(f"cannot write '{p}': it is a loop of symbolic links")
    except OSError as exc:
        if isinstance(exc, FileWriteError):
            raise
        raise FileWriteError(f"cannot write '{p}': {_reason(exc)}") from None
    return target


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary binary file beside ``path``; on a clean exit it is flushed, synced and
    renamed over ``path``. On any exception (KeyboardInterrupt included) it is removed and
    ``path`` is untouched. OS errors become :class:`FileWriteError` naming ``path``.

    The new file keeps the permission bits of the file it replaces (else the umask's).
    """
    shown = Path(path)
    target = resolve_target(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        is_dir, is_other = target.is_dir(), target.exists() and not target.is_file()
    except OSError as exc:  # a name too long, a component that is not a folder, ...
        raise FileWriteError(f"cannot write '{shown}': {_reason(exc)}") from None
    if is_dir:
        raise FileWriteError(f"cannot write '{shown}': it is a folder")
    if is_other:
        # A device or FIFO (/dev/null, /dev/full, a pipe): there is no old file to keep, and
        # renaming over it would replace the device. Write to it directly.
        try:
            with open(target, "wb") as fh:
                yield fh
                fh.flush()
        except OSError as exc:
            raise FileWriteError(f"cannot write '{shown}': {_reason(exc)}") from None
        return
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise FileWriteError(f"cannot write '{shown}': {_reason(exc)}") from None
    tmp = Path(tmp_name)
    try:
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
        except OSError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileWriteError):
            raise FileWriteError(f"cannot write '{shown}': {_reason(exc)}") from None
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(fh)`` on a temporary file and rename it over ``path`` (see
    :func:`atomic_open`). Returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_open(path) as fh:
        write(fh)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def read_bytes_limited(
    path: str | os.PathLike[str], limit: int = MAX_INPUT_FILE_BYTES, what: str = "file"
) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes.

    Refuses, with :class:`FileReadError` naming the path: a missing file, a folder, a FIFO or a
    device (which could block or never end), and a file over the limit (never reading more than
    ``limit + 1`` bytes, should the file grow while it is read).
    """
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise FileReadError(f"no such {what}: {p}") from None
    except OSError as exc:
        raise FileReadError(f"cannot read {what} {p}: {_reason(exc)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise FileReadError(f"cannot read {what} {p}: it is a folder")
    if not stat.S_ISREG(st.st_mode):
        raise FileReadError(
            f"cannot read {what} {p}: not a regular file (a device, pipe or socket)"
        )
    if st.st_size > limit:
        raise FileReadError(
            f"{what} {p} is {format_bytes(st.st_size)}, over the limit of {format_bytes(limit)}"
        )
    try:
        # O_NONBLOCK: should the path become a FIFO between stat and open, open returns at once.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise FileReadError(f"cannot read {what} {p}: {_reason(exc)}") from None
    if len(data) > limit:
        raise FileReadError(f"{what} {p} is over the limit of {format_bytes(limit)}")
    return data


def read_text_limited(
    path: str | os.PathLike[str], limit: int = MAX_INPUT_FILE_BYTES, what: str = "file"
) -> str:
    """:func:`read_bytes_limited` decoded as UTF-8; :class:`FileReadError` when it is not text."""
    data = read_bytes_limited(path, limit, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileReadError(f"{what} {Path(path).expanduser()} is not UTF-8 text") from None
