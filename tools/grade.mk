# The grader's fan-out: one target per submitted notebook, so `make grade -j 2` runs two at once (make -k: a failing
# target never stops the others). tools/grade.py writes the plan and calls this file; do not run it by hand.
#   make -f tools/grade.mk -k -j N WORK=<grades/.work> PYTHON=<python> GRADER=<tools/grade.py> TARGETS="<student>/<notebook> ..."
WORK    ?= grades/.work
PYTHON  ?= .venv/bin/python
GRADER  ?= tools/grade.py
TARGETS ?=

.PHONY: all
all: $(TARGETS:%=$(WORK)/%.json)

# each target: one notebook of one student, in a fresh kernel in its own temporary directory (tools/grade.py execute)
$(WORK)/%.json:
	@echo "  running $*"
	@$(PYTHON) $(GRADER) execute --plan $(WORK)/plan.json --job $* 2> $(WORK)/$*.log || echo "  $*: the worker failed (see $(WORK)/$*.log)"
