# Taskwarden: `make run` starts everything (sandbox portal when no B24_WEBHOOK_URL), `make test` tests it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REDIS_URL ?= redis://127.0.0.1:6379/0
TEST_REDIS_URL ?= redis://127.0.0.1:6379/13

.PHONY: run demo test lint typecheck install redis clean fuzz

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

redis: install
	$(PY) scripts/ensure_redis.py $(REDIS_URL) --detach

# APP=1: application mode, two sandbox portals install Taskwarden (docs/app-mode.md)
run: install
	$(PY) scripts/run.py run $(if $(APP),--app)

demo: install
	$(PY) scripts/run.py demo $(if $(APP),--app)

test: install lint
	$(PY) scripts/ensure_redis.py $(TEST_REDIS_URL) --detach
	$(PY) scripts/prod_venv.py   # requirements.txt alone, as the image installs it (tests/test_production.py)
	TASKWARDEN_TEST_REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

FUZZ_RUNS ?= 20000
fuzz: install
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-fuzz.txt
	PYTHONPATH=. $(PY) fuzz/fuzz_intake.py -runs=$(FUZZ_RUNS) -max_len=4096
	PYTHONPATH=. $(PY) fuzz/fuzz_rules.py -runs=$(FUZZ_RUNS) -max_len=4096

# Benchmarks print one JSON line each; they are not timed tests. The bench Redis db is flushed before and after.
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/11
.PHONY: bench bench-ingest bench-enforce bench-sweep

bench: bench-ingest bench-enforce bench-sweep

bench-enforce: install
	$(PY) scripts/ensure_redis.py $(BENCH_REDIS_URL) --detach
	$(PY) -m bench.enforce --redis-url $(BENCH_REDIS_URL)

bench-sweep: install
	$(PY) scripts/ensure_redis.py $(BENCH_REDIS_URL) --detach
	$(PY) -m bench.sweep --redis-url $(BENCH_REDIS_URL)

bench-ingest: install
	$(PY) scripts/ensure_redis.py $(BENCH_REDIS_URL) --detach
	$(PY) -m bench.ingest --redis-url $(BENCH_REDIS_URL)

# A master, a replica and three Sentinels of its own on loopback (the machine's Redis is not used).
.PHONY: bench-failover
bench-failover: install
	$(PY) -m bench.failover
