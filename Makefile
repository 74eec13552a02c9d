# The two commands of the README: `make demo` and `make test`. Both install what is missing first.
.PHONY: install demo test lint bench

install:
	@scripts/bootstrap.sh

demo: install
	.venv/bin/dsar demo

test: install
	@scripts/services.sh
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/pytest

lint: install
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
