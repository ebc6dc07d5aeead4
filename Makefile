# The two commands of the README's quick start. Both work on a fresh machine with
# Python 3.11+ and a C compiler: they make a virtualenv in .venv and install into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# reinstall (and recompile the Cython modules) only when what the build reads changed
BUILD_INPUTS := setup.py pyproject.toml $(wildcard core_ext/*.pyx core_ext/*.pxd)

.PHONY: serve test install system-packages rocketmq-jars clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# What the cluster backends' tests need from the system: the servers tests/servers.py
# starts (mariadbd, redis-server, java for RocketMQ), what mysqlclient builds against and
# maven, which fetches the RocketMQ jars. Checked on every `make install` / `make test` (a
# few lookups); installed with apt-get when missing and we are root. `make serve` needs
# none of it: one node runs on the embedded backends.
DEB_PACKAGES := mariadb-server default-libmysqlclient-dev pkg-config redis-server default-jre-headless maven
# The RocketMQ name server and broker jars the bus tests run, fetched once (~90 MB) into a
# cache outside the checkout; the script returns at once when they are there.
ROCKETMQ_JARS := tests/rocketmq/fetch-jars.sh

# the node alone (make serve)
$(VENV)/.installed: $(BIN)/python $(BUILD_INPUTS)
	$(BIN)/pip install -q -e .
	touch $@

# the node, the test tools and the cluster backends' clients (make install, make test);
# a superset of the above, so it counts as that install too
$(VENV)/.installed-test: $(BIN)/python $(BUILD_INPUTS) | system-packages
	$(BIN)/pip install -q -e '.[test,cluster]'
	touch $(VENV)/.installed $@

install: system-packages $(VENV)/.installed-test rocketmq-jars

rocketmq-jars: | system-packages
	@sh $(ROCKETMQ_JARS)

system-packages:
	@have() { PATH="$$PATH:/usr/sbin:/usr/local/sbin" command -v "$$1" >/dev/null 2>&1; }; \
	if have mariadbd && have mariadb-install-db && have redis-server && have pkg-config \
	   && pkg-config --exists mysqlclient && have java && have mvn; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! have apt-get; then \
	  echo "The tests need MariaDB, Redis, the MySQL client headers, Java and Maven. On Debian/Ubuntu run:" >&2; \
	  echo "  sudo apt-get install -y $(DEB_PACKAGES)" >&2; \
	  echo "(elsewhere: mariadbd, mariadb-install-db, redis-server, pkg-config, mysqlclient.pc, java 11+ and mvn)" >&2; \
	  exit 1; \
	fi; \
	echo "installing $(DEB_PACKAGES)"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get install -y -q $(DEB_PACKAGES) >/dev/null \
	  || { apt-get update -q >/dev/null && apt-get install -y -q $(DEB_PACKAGES) >/dev/null; }

## make serve: install edgeim and run one node on embedded defaults (data under ./data)
serve: $(VENV)/.installed
	$(BIN)/im serve

## make test: install what the tests need and run them all
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) build *.egg-info core_ext/*.c core_ext/*.so
