# The two commands a new machine needs: `make run` and `make test`.
# Everything else here is for working on the project.

.PHONY: run test lint typecheck pytest bench lock install browser demo-emulator

run:  ## its own Redis (unless REDIS_URL), migrations, web, worker, maintenance; a demo GitHub if no App is configured
	@test -x .venv/bin/python || echo "Installing the locked dependencies into .venv (once)"
	@scripts/bootstrap.sh --extra dev --quiet
	@.venv/bin/python -m scripts.run

test: install browser lint typecheck pytest  ## everything CI checks

install:
	scripts/bootstrap.sh --extra dev

browser:  ## Debian's Chromium for tests/browser (installed if missing and allowed)
	scripts/ensure_chromium.sh

lint:
	.venv/bin/ruff check .

typecheck:
	.venv/bin/mypy

pytest:
	.venv/bin/pytest $(PYTEST_ARGS)

bench: install  ## benchmarks; they print numbers and write JSON to bench/results/
	.venv/bin/python -m bench

lock:  ## re-resolve uv.lock after editing pyproject.toml
	.tools/bin/uv lock
