# kiosk-edge: the two commands a newcomer runs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := pcscd vsmartcard-vpcd libpcsclite-dev swig mosquitto mosquitto-clients \
	fonts-unifont xfonts-wqy systemd linux-libc-dev gcc python3-dev chromium gettext

.PHONY: fuzz demo test lint bench venv devenv sysdeps clean console-demo messages

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo needs only pure-Python packages (simulated devices, embedded broker, SQLite).
venv: $(BIN)/python
	$(BIN)/pip install -q -e '.[gpio,display,cloud]'

demo: venv
	$(BIN)/kiosk demo --out demo-out

# Debian packages the tests need (real pcscd + vpcd, mosquitto, fonts, systemd-analyze), installed
# only when missing and only when we are root.
sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing Debian packages:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "missing Debian packages (run as root to install):$$missing"; \
		fi; \
	fi

devenv: sysdeps $(BIN)/python
	$(BIN)/pip install -q -e '.[hw,gpio,display,cloud,cards,sim,console,dev]'

lint: devenv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The back office on the demo's data, on localhost: a chain-admin `demo` whose password is printed
# once (run `make demo` first for the data).
console-demo: devenv
	@test -f demo-out/day/cloud.db || $(BIN)/kiosk demo --out demo-out
	@printf '[reconciler]\nkey_file = "keys/cloud.key"\nsite_key_file = "keys/site.key"\nstore = "sqlite:///demo-out/day/cloud.db"\n[console]\nsites = ["riverside-pool"]\n' > demo-out/day/cloud.toml
	$(BIN)/kiosk cloud console --config demo-out/day/cloud.toml --host 127.0.0.1 --port 8000 --create-admin demo

# Recompile the console's Chinese catalogue after editing backoffice/locale/*/django.po.
messages:
	cd backoffice && msgfmt --check -o locale/zh_Hans/LC_MESSAGES/django.mo locale/zh_Hans/LC_MESSAGES/django.po

# Every decoder of outside input under atheris, FUZZ_RUNS executions each; stops at a crash.
FUZZ_RUNS ?= 1000000
FUZZ_TARGETS := envelope body ops enroll_request enroll_answer bundle wedge_text kiosk_config
fuzz: devenv
	$(BIN)/pip install -q -e '.[fuzz]'
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t: $(FUZZ_RUNS) runs"; \
		$(BIN)/python -m fuzz $$t -runs=$(FUZZ_RUNS) -max_len=4096 -print_final_stats=1 2>&1 | tail -12 || exit 1; \
	done

bench: devenv
	$(BIN)/python -m bench

clean:
	rm -rf demo-out .pytest_cache .mypy_cache .ruff_cache
