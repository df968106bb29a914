# Two commands do all the set-up on a fresh machine (see README.md):
#   make app    install what the app needs into .venv, then launch it
#   make test   install the test tools too, then run the whole suite headless
# Overrides: PYTHON, VENV, TORCH_SPEC, TORCH_INDEX_URL (see scripts/bootstrap.sh), ARGS.

VENV ?= .venv
export VENV
ARGS ?=

.PHONY: app test lint bench setup setup-test clean

app: setup
	$(VENV)/bin/implicit-viz $(ARGS)

test: setup-test
	$(VENV)/bin/ruff check implicit_viz tests benchmarks
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python -m pytest $(ARGS)

lint: setup-test
	$(VENV)/bin/ruff check implicit_viz tests benchmarks
	$(VENV)/bin/ruff format --check implicit_viz tests benchmarks

bench: setup-test
	$(VENV)/bin/python -m pip install -q "torchdeq>=0.1"
	$(VENV)/bin/python benchmarks/bench_solve.py $(ARGS)
	$(VENV)/bin/python benchmarks/bench_sweep.py $(ARGS)
	$(VENV)/bin/python benchmarks/bench_grad.py $(ARGS)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python benchmarks/bench_app.py $(ARGS)
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/python benchmarks/bench_redraw.py $(ARGS)

setup:
	@scripts/bootstrap.sh app

setup-test:
	@scripts/bootstrap.sh test

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
