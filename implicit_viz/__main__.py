"""`python -m implicit_viz` is the `implicit-viz` command."""

from implicit_viz.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
