# The two set-up-and-go commands (README): `make repro` runs the default pipeline, `make test` the tests.
# Both install the locked environment first (uv.lock, exact versions) into .venv; it is re-synced only when
# the lock or pyproject changes. Bytecode is compiled at install time because these machines set
# PYTHONDONTWRITEBYTECODE, which would otherwise make every stage recompile torch on import (~10 s each).

UV_VERSION := 0.13.9

.PHONY: repro test setup
setup: .venv/.synced

.venv/.synced: uv.lock pyproject.toml
	command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	uv sync --frozen --compile-bytecode
	touch $@

repro: setup
	uv run --frozen dvc repro

test: setup
	uv run --frozen pytest
