# Instructor targets (docs/instructors.md), included by the Makefile: `make student`, `make key`, `make grade`,
# `make gradebook`, `make html`. The student release has no instructor/ folder, so its Makefile has the students'
# targets only.
INSTRUCTOR  := $(VENV)/.instructor
SUBMISSIONS ?=
GRADES      ?= grades
GRADE_ARGS  ?=
# `make grade -j 4` grades four notebooks at once (Dask workers); without -j, one
JOBS        := $(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),1)

.PHONY: instructor student key grade gradebook html mutate bench sandbox-check

instructor: $(INSTRUCTOR) ## install the instructor-only tools (nbgrader, Dask, a local MathJax) into .venv

$(INSTRUCTOR): $(STAMP) requirements-instructor.txt
	$(BIN)/python -m pip install --quiet -r requirements-instructor.txt
	touch $@

# `make test` runs instructor/tests too, which need the instructor tools and the grader's sandbox
test: $(INSTRUCTOR) sandbox-check

sandbox-check:
	@command -v bwrap >/dev/null || { echo "error: bubblewrap is missing; the grader runs submissions in its sandbox."; \
	  echo "Install it: sudo apt-get install bubblewrap (Debian/Ubuntu), sudo dnf install bubblewrap (Fedora)."; exit 1; }

student: $(INSTRUCTOR) ## build release/, the students' repository: STUDENT_REPO=<its URL> is required
	$(BIN)/python -m instructor.release --out release $(if $(STUDENT_REPO),--repository $(STUDENT_REPO))

key: $(INSTRUCTOR) sandbox-check ## grade the solution notebooks (quick) and write instructor/key.json, the models' reference
	$(BIN)/python -m instructor.grader key --jobs $(JOBS)

grade: $(INSTRUCTOR) sandbox-check ## grade SUBMISSIONS=<dir> (a folder per student) into grades/; -j 2: two at once
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder holding one folder per student> [-j 2]"; exit 2; }
	$(BIN)/python -m instructor.grader grade $(SUBMISSIONS) --grades $(GRADES) --jobs $(JOBS) $(GRADE_ARGS)

gradebook: $(INSTRUCTOR) ## merge the TAs' points (grades/manual-points.csv) into grades/gradebook.csv, running nothing
	$(BIN)/python -m instructor.grader gradebook --grades $(GRADES)

html: $(INSTRUCTOR) ## render the notebooks to site/ for offline reading (HTML_RELEASE=1: release/ too)
	$(BIN)/python -m instructor.site --out site $(if $(HTML_RELEASE),--release)

mutate: $(INSTRUCTOR) ## mutation testing of answers/*.py against the answer tests and the hidden tests (not in make test)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	VENV=$(VENV) instructor/mutate.sh

bench: $(INSTRUCTOR) sandbox-check ## training throughput against the matmul rate, then grading throughput (minutes)
	$(BIN)/python -m instructor.bench.throughput
	$(BIN)/python -m instructor.bench.grading
