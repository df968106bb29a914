"""Launch the desktop app: ``implicit-viz [SPEC] [--session FILE] [--screenshot OUT.png]``.

``--screenshot`` renders the window offscreen once the first solve is drawn, writes the PNG and
exits (0 on success), so README pictures and CI checks need no display.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: How long ``--screenshot`` waits for the first solve before giving up (seconds).
SCREENSHOT_TIMEOUT_S = 60.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="implicit-viz",
        description="Open the implicit-viz window on SPEC (a preset name or a .toml file; default "
        "the tanh_layer preset). Subcommands (solve, sweep, grad, presets) run without a window: "
        "see `implicit-viz --help`.",
    )
    p.add_argument("spec", nargs="?", help="preset name or spec file to open")
    p.add_argument("--session", metavar="FILE", help="open a saved session")
    p.add_argument(
        "--screenshot",
        metavar="OUT.png",
        help="render the window offscreen after the first solve, write OUT.png and exit",
    )
    p.add_argument("--size", default="1500x940", help="window size WxH (default 1500x940)")
    p.add_argument(
        "--view",
        choices=("live", "basins", "gradients"),
        default="live",
        help="the tab to open; basins and gradients also run once (their default axes/settings), "
        "and --screenshot waits for that run",
    )
    return p


def run_app(argv: Sequence[str] | None = None) -> int:
    """Parse app arguments, open the window and run the event loop; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
        if not (200 <= w <= 8000 and 200 <= h <= 8000):
            raise ValueError
    except ValueError:
        print(
            f"implicit-viz: error: --size needs WxH in 200..8000, got '{args.size}'",
            file=sys.stderr,
        )
        return 2
    if args.screenshot:
        out = Path(args.screenshot).expanduser()
        if out.suffix.lower() != ".png":
            print("implicit-viz: error: --screenshot needs a .png file name", file=sys.stderr)
            return 2
        if not out.parent.is_dir():
            print(f"implicit-viz: error: cannot write {out}: no such directory", file=sys.stderr)
            return 1
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    elif _no_display():
        print(
            "implicit-viz: error: no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run "
            "the window under a virtual display (`xvfb-run -a implicit-viz`), render it with "
            "`implicit-viz --screenshot out.png`, or use the subcommands (`implicit-viz --help`).",
            file=sys.stderr,
        )
        return 1
    problem = check_inputs(args.spec, args.session, strict=bool(args.screenshot))
    if problem:  # one line, before any window: nothing half-opened, no thread to stop
        print(f"implicit-viz: error: {problem}", file=sys.stderr)
        return 2 if problem.startswith("no preset") else 1

    from PySide6.QtWidgets import QApplication

    from implicit_viz.gui._refcount_guard import guard_singletons

    guard_singletons()  # before any Qt object: PySide6 6.12 on CPython 3.11 loses references
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("implicit-viz")
    app.setOrganizationName("implicit-viz")
    # Python's cycle collector only from a timer on the GUI thread: a collection started at an
    # arbitrary allocation (in a worker thread, or inside a Qt call holding a signal lock) can
    # free a Qt object at a moment Qt cannot take it, and hang or crash the app.
    from pyqtgraph.util.garbage_collector import GarbageCollector

    collector = GarbageCollector(interval=0.5)

    from implicit_viz.core.device import available_devices
    from implicit_viz.gui.main_window import MainWindow

    window = MainWindow(devices=available_devices())
    try:
        return _run_window(window, app, collector, args, w, h)
    except Exception as exc:  # never leave with the worker threads running (Qt would abort)
        log.error("unexpected error:\n%s", traceback.format_exc())
        print(f"implicit-viz: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        window.shutdown()
        return 1
    finally:
        collector.timer.stop()
        gc.enable()  # the collector turned automatic collection off


def check_inputs(spec: str | None, session: str | None, *, strict: bool) -> str:
    """The one-line problem with the command line's SPEC and --session, "" when none.

    SPEC must name a preset or a readable spec file (at most 2 MB); with ``strict`` (a
    ``--screenshot`` run, which would otherwise wait for a solve that never comes) its text must
    pass the editor's check too.
    A session is checked whole, its spec text included, before any window opens."""
    from implicit_viz.core.files import FileReadError, read_text_limited
    from implicit_viz.core.presets import preset_names, preset_path
    from implicit_viz.gui.session import SessionError, load_session

    if session:
        try:
            load_session(session)
        except SessionError as exc:
            return str(exc)
    if spec is None or (preset_path(spec) is not None and not Path(spec).is_file()):
        return ""
    p = Path(spec).expanduser()
    if not p.exists() and not p.is_symlink() and p.suffix.lower() != ".toml" and "/" not in spec:
        return f"no preset or spec file named '{spec}' (presets: {', '.join(preset_names())})"
    try:
        text = read_text_limited(p, what="spec file")
    except FileReadError as exc:
        return str(exc)
    if strict:
        from implicit_viz.core.errors import SpecError
        from implicit_viz.gui.spec_editor import check_spec_text

        try:
            check_spec_text(text)  # the window's own check: what it refuses it never solves
        except SpecError as exc:
            return f"{p}: {exc.one_line()}"
        except ValueError as exc:  # a LimitError
            return f"{p}: {exc}"
    return ""


def _run_window(window, app, collector, args, w: int, h: int) -> int:
    """Show ``window`` (opening SPEC or the session), run the event loop; the exit status."""
    from PySide6.QtCore import Qt, QTimer

    out = Path(args.screenshot).expanduser() if args.screenshot else None
    window.resize(w, h)
    _install_excepthook(window)
    status = {"code": 0}

    def first_solve(_rid: int) -> None:
        if args.view == "basins":
            window._run_basins()
        elif args.view == "gradients":
            window._run_gradient()

    window.snapshotShown.connect(first_solve, Qt.ConnectionType.SingleShotConnection)

    if args.screenshot:

        def shoot(*_args) -> None:
            # let the views paint the new data before grabbing
            QTimer.singleShot(200, lambda: _save(window, out, status, app))

        def give_up() -> None:
            print(
                f"implicit-viz: error: no solve finished within {SCREENSHOT_TIMEOUT_S:.0f} s"
                + (f" ({window.last_error})" if window.last_error else ""),
                file=sys.stderr,
            )
            status["code"] = 1
            app.quit()

        done_signal = {
            "live": window.snapshotShown,
            "basins": window.basins.sweepFinished,
            "gradients": window.gradient.reportShown,
        }[args.view]
        done_signal.connect(shoot, Qt.ConnectionType.SingleShotConnection)
        QTimer.singleShot(int(SCREENSHOT_TIMEOUT_S * 1000), give_up)

    window.show()
    window.start(args.spec)
    if args.session and not window.open_session(args.session):
        window.shutdown()  # checked above; it changed on disk since: say so and stop
        print(f"implicit-viz: error: {window.last_error}", file=sys.stderr)
        return 1
    app.exec()
    window.shutdown()
    return status["code"]


def _no_display() -> bool:
    """True on Linux/BSD without X11 or Wayland, unless a Qt platform is chosen explicitly."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return False
    if os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _save(window, out: Path, status: dict, app) -> None:
    from implicit_viz.gui.main_window import write_widget_image

    try:
        write_widget_image(window, out)  # atomic; a symbolic link is written through
        print(str(out))
    except OSError as exc:
        print(f"implicit-viz: error: {exc}", file=sys.stderr)
        status["code"] = 1
    app.quit()


def _install_excepthook(window) -> None:
    """An exception escaping a slot becomes a message in the window, not a crash."""
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            previous(exc_type, exc, tb)
            return
        log.error("unexpected error:\n%s", "".join(traceback.format_exception(exc_type, exc, tb)))
        try:
            window.report_error(f"internal error: {exc_type.__name__}: {exc}", dialog=False)
        except Exception:  # pragma: no cover - the window itself is broken
            previous(exc_type, exc, tb)

    sys.excepthook = hook
