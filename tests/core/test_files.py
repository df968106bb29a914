"""Atomic writes (implicit_viz.core.files): a failure, a full disk or a Ctrl-C leaves the old file
byte for byte; links are written through; permissions are kept; devices are written directly."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from implicit_viz.core.files import (
    FileReadError,
    FileWriteError,
    atomic_open,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    read_bytes_limited,
)
from tests.helpers import fail_writes_after

OLD = b"old valid content\n" * 100


def leftovers(folder: Path) -> list[str]:
    """Temporary files left beside the target."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def old_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_bytes(OLD)
    return path


def test_write_replaces_content(old_file):
    atomic_write_text(old_file, "new")
    assert old_file.read_text() == "new"
    assert leftovers(old_file.parent) == []


def test_write_creates_a_new_file_with_umask_permissions(tmp_path):
    path = tmp_path / "fresh.bin"
    atomic_write_bytes(path, b"abc")
    assert path.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_dev_full_gives_a_clear_error():
    with pytest.raises(FileWriteError, match=r"cannot write '/dev/full': no space left"):
        atomic_write_bytes("/dev/full", b"x" * 100_000)
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # the device is still a device


def test_dev_null_is_written_directly():
    assert atomic_write_bytes("/dev/null", b"hello") == Path("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_enospc_mid_write_keeps_the_old_file(old_file, monkeypatch):
    fail_writes_after(monkeypatch, 4096)
    with pytest.raises(FileWriteError, match="no space left on device") as info:
        atomic_write_bytes(old_file, b"N" * 100_000)
    assert str(old_file) in str(info.value)
    assert old_file.read_bytes() == OLD
    assert leftovers(old_file.parent) == []


@pytest.mark.parametrize("times", [1, 2])
def test_keyboard_interrupt_mid_write_keeps_the_old_file(old_file, times):
    """A Ctrl-C from inside the writer (and a second one while it unwinds) leaves no trace."""

    def writer(fh):
        fh.write(b"partial new content" * 1000)
        try:
            raise KeyboardInterrupt
        finally:
            if times == 2:
                fh.write(b"more")
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(old_file, writer)
    assert old_file.read_bytes() == OLD
    assert leftovers(old_file.parent) == []


def test_any_exception_in_the_writer_keeps_the_old_file(old_file):
    def writer(fh):
        fh.write(b"{")
        raise ValueError("Out of range float values are not JSON compliant")

    with pytest.raises(ValueError):
        atomic_write(old_file, writer)
    assert old_file.read_bytes() == OLD
    assert leftovers(old_file.parent) == []


def test_symlink_is_written_through(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    target = real_dir / "target.json"
    target.write_bytes(OLD)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_text(link, "through the link")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "through the link"
    assert leftovers(tmp_path) == leftovers(real_dir) == []


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "not_yet.txt")
    atomic_write_text(link, "made")
    assert link.is_symlink() and (tmp_path / "not_yet.txt").read_text() == "made"


def test_permissions_of_the_replaced_file_are_kept(old_file):
    old_file.chmod(0o640)
    atomic_write_text(old_file, "new")
    assert stat.S_IMODE(old_file.stat().st_mode) == 0o640
    old_file.chmod(0o604)
    atomic_write_text(old_file, "newer")
    assert stat.S_IMODE(old_file.stat().st_mode) == 0o604


def test_folder_and_missing_folder_are_errors_naming_the_path(tmp_path):
    with pytest.raises(FileWriteError, match="it is a folder"):
        atomic_write_text(tmp_path, "x")
    missing = tmp_path / "no" / "such.txt"
    with pytest.raises(FileWriteError, match=r"such\.txt.*no such file"):
        atomic_write_text(missing, "x")


def test_atomic_open_nothing_visible_until_done(old_file):
    with atomic_open(old_file) as fh:
        fh.write(b"new")
        assert old_file.read_bytes() == OLD  # the target changes only at the rename
        assert len(leftovers(old_file.parent)) == 1
    assert old_file.read_bytes() == b"new"


def test_read_limited_refuses_devices_and_oversize(tmp_path):
    with pytest.raises(FileReadError, match="not a regular file"):
        read_bytes_limited("/dev/zero", 100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileReadError, match="over the limit"):
        read_bytes_limited(big, 100)
    assert read_bytes_limited(big, 101) == b"x" * 101


# --- a real full disk: a 64 KiB tmpfs ---------------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs mounted on a fresh folder; skipped where mounting is refused."""
    mnt = tmp_path / f"tmpfs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("no mount/umount command")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)


def test_real_full_disk_keeps_the_old_file(small_tmpfs):
    path = small_tmpfs / "trace.json"
    path.write_bytes(OLD)
    with pytest.raises(FileWriteError, match="no space left on device") as info:
        atomic_write_bytes(path, b"N" * 200_000)
    assert str(path) in str(info.value)
    assert path.read_bytes() == OLD
    assert leftovers(small_tmpfs) == []
    atomic_write_bytes(path, b"small")  # the space was given back
    assert path.read_bytes() == b"small"


def test_a_loop_of_links_is_refused_and_stays_a_loop(tmp_path):
    """Writing through links that lead back to themselves names the loop; no write replaces a
    link of the loop with a file (the red-team found loop.npz -> loop.npz replaced)."""
    loop = tmp_path / "loop.npz"
    loop.symlink_to(loop)
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    for path in (loop, a):
        with pytest.raises(FileWriteError, match="loop of symbolic links"):
            atomic_write_text(path, "x")
    assert loop.is_symlink() and a.is_symlink() and b.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "loop.npz"]


def test_a_name_too_long_or_under_a_file_is_one_clear_error(tmp_path):
    """OS errors from looking at the path (ENAMETOOLONG, ENOTDIR) are FileWriteErrors that name
    the path, not bare OSErrors escaping to the caller."""
    with pytest.raises(FileWriteError, match="file name too long"):
        atomic_write_text(tmp_path / ("y" * 300 + ".ivsession"), "x")
    plain = tmp_path / "plain.txt"
    plain.write_text("keep", encoding="utf-8")
    with pytest.raises(FileWriteError, match="not a directory") as info:
        atomic_write_text(plain / "inside.json", "x")
    assert str(plain / "inside.json") in str(info.value)
    assert plain.read_text(encoding="utf-8") == "keep"
