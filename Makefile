# Two commands do everything on a fresh machine:
#   make book   create .venv, install requirements.txt, build the site into _build/html
#   make test   the whole test suite (builds the site first; installs the
#               system packages the browser and database tests need)
# and, for instructors:
#   make release                 regenerate exercises/ from solutions/
#   make grade ASSIGNMENT=bn_math [SUBMISSIONS=submitted]
#   make publish DEST=../student  write the student edition (no solution, no hidden test)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ASSIGNMENTS := covariate_shift bn_math train_eval alternatives pitfalls
ASSIGNMENT ?=
SUBMISSIONS ?= submitted
PYTEST_ARGS ?=
DEST ?=

.PHONY: book test release grade publish system-deps clean help

help:
	@sed -n '1,8p' Makefile

$(INSTALLED): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	# jsonschema's optional IRI format checker builds a grammar when imported, which
	# costs every nbgrader command about 3 s; nothing in the course needs it.
	$(BIN)/python -m pip uninstall --quiet --yes rfc3987-syntax
	touch $@

book: $(INSTALLED)
	$(BIN)/jupyter-book build . --warningiserror --nitpick --keep-going

system-deps:
	bash tests/install_system_deps.sh

test: book system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

release: $(INSTALLED)
	$(BIN)/python -m autograder release $(ASSIGNMENTS)

grade: $(INSTALLED)
	@test -n "$(ASSIGNMENT)" || { echo "usage: make grade ASSIGNMENT=<one of: $(ASSIGNMENTS)> [SUBMISSIONS=folder-or-zip]"; exit 2; }
	$(BIN)/python -m autograder grade $(ASSIGNMENT) $(SUBMISSIONS)

publish: $(INSTALLED)
	@test -n "$(DEST)" || { echo "usage: make publish DEST=<folder outside this repository>"; exit 2; }
	$(BIN)/python -m autograder publish "$(DEST)"

clean:
	rm -rf _build autograded feedback grading gradebook.db grades.csv
