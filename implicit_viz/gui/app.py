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

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

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
    window.resize(w, h)
    _install_excepthook(window)
    status = {"code": 0}

    from PySide6.QtCore import Qt

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
    if args.session:
        window.start(args.spec)
        window.open_session(args.session)
    else:
        window.start(args.spec)
    try:
        app.exec()
        window.shutdown()
    finally:
        collector.timer.stop()
        gc.enable()  # the collector turned automatic collection off
    return status["code"]


def _no_display() -> bool:
    """True on Linux/BSD without X11 or Wayland, unless a Qt platform is chosen explicitly."""
    if not sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return False
    if os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _save(window, out: Path, status: dict, app) -> None:
    if window.grab().save(str(out)):
        print(str(out))
    else:
        print(f"implicit-viz: error: cannot write {out}", file=sys.stderr)
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
