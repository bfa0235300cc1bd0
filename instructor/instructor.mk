# Instructor targets (docs/instructors.md), included by the Makefile: `make student`, `make key`, `make collect`,
# `make grade`, `make gradebook`, `make similarity`, `make html`, `make html-student`. The student release has no
# instructor/ folder, so its Makefile has the students' targets only.
INSTRUCTOR  := $(VENV)/.instructor
SUBMISSIONS ?=
GRADES      ?= grades
GRADE_ARGS  ?=
COURSE      ?= course.toml
FROM        ?=
COLLECT_ARGS ?=
# COURSE= typed for make grade; without it, the grader takes the course file the class was collected with
GIVEN_COURSE = $(filter command line environment,$(origin COURSE))
SIMILARITY_ARGS ?=
# FROM=canvas:<zip>: the kind before the first colon, the file after it (a path may hold colons of its own)
FROM_KIND   := $(firstword $(subst :, ,$(FROM)))
FROM_FILE   := $(patsubst $(FROM_KIND):%,%,$(FROM))
# `make grade -j 4` grades four notebooks at once (Dask workers); `-j` alone, one per core; without -j, one. Expanded
# in the recipe (`=`, not `:=`): GNU make puts -jN into MAKEFLAGS only after it has read the makefiles.
JOBS         = $(or $(patsubst -j%,%,$(filter -j%,$(MAKEFLAGS))),$(if $(filter -j,$(MAKEFLAGS)),$(CORES)),1)
CORES       := $(shell nproc 2>/dev/null || echo 1)

# Arguments are checked when the makefiles are read, before anything is installed.
ifneq ($(filter student,$(MAKECMDGOALS)),)
  ifeq ($(strip $(STUDENT_REPO)),)
    $(error make student needs STUDENT_REPO=<the students' repository URL>, e.g. make student STUDENT_REPO=https://github.com/<course>/<homework>)
  endif
endif
ifneq ($(filter collect,$(MAKECMDGOALS)),)
  ifeq ($(filter canvas:% moodle:% github:%,$(FROM)),)
    $(error make collect needs FROM=canvas:<zip>, moodle:<zip> or github:<roster.csv>, e.g. make collect FROM=canvas:~/Downloads/submissions.zip SUBMISSIONS=~/hw1/submissions)
  endif
  ifeq ($(wildcard $(FROM_FILE)),)
    $(error FROM=$(FROM): no file $(FROM_FILE): give the $(FROM_KIND) download (or roster) as it was saved)
  endif
  ifeq ($(strip $(SUBMISSIONS)),)
    $(error make collect needs SUBMISSIONS=<a new folder>, where each student's notebooks go, e.g. make collect FROM=$(FROM) SUBMISSIONS=~/hw1/submissions)
  endif
  ifeq ($(wildcard $(COURSE)),)
    $(error no course file $(COURSE): copy course.toml, set its deadline, late policy and roster, and give COURSE=<it>)
  endif
endif
ifneq ($(filter grade,$(MAKECMDGOALS)),)
  ifeq ($(strip $(SUBMISSIONS)),)
    $(error make grade needs SUBMISSIONS=<folder holding one folder per student>, e.g. make grade SUBMISSIONS=~/hw1/submissions -j 2)
  endif
  ifeq ($(wildcard $(SUBMISSIONS)/.),)
    $(error SUBMISSIONS=$(SUBMISSIONS) is not a folder: give the folder that holds one folder per student (make collect makes it))
  endif
endif
ifneq ($(filter similarity,$(MAKECMDGOALS)),)
  ifeq ($(strip $(SUBMISSIONS)),)
    $(error make similarity needs SUBMISSIONS=<folder holding one folder per student>, e.g. make similarity SUBMISSIONS=~/hw1/submissions)
  endif
  ifeq ($(wildcard $(SUBMISSIONS)/.),)
    $(error SUBMISSIONS=$(SUBMISSIONS) is not a folder: give the folder that holds one folder per student)
  endif
endif

.PHONY: instructor questions test-fast student key collect grade gradebook similarity html html-student mutate bench sandbox-check

instructor: $(INSTRUCTOR) ## install the instructor-only tools (nbgrader, Dask, a local MathJax) into .venv

# The .pth file puts this repository on the path of every process of .venv: a `dask scheduler` or `dask worker`
# started from the .venv imports the grader wherever it is started, with no PYTHONPATH. Dask reads its settings for
# grading (instructor/grader/dask.yaml) from .venv/etc/dask in every process of .venv.
$(INSTRUCTOR): $(STAMP) requirements-instructor.txt instructor/instructor.mk instructor/grader/dask.yaml
	$(BIN)/python -m pip install --quiet -r requirements-instructor.txt
	$(BIN)/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "dgm-course-repository.pth").write_text("$(CURDIR)\n")'
	mkdir -p $(VENV)/etc/dask && cp instructor/grader/dask.yaml $(VENV)/etc/dask/dgm-grader.yaml
	touch $@

# QUESTIONS.md and the points of docs/instructors.md, from the notebooks' metadata and the bank's declarations (the
# course model reads them as text: no instructor tool is needed); `make answers` makes them too
questions: $(STAMP) ## write QUESTIONS.md and the points table of docs/instructors.md from the notebooks and the bank
	$(BIN)/python -m instructor.course_model

answers: questions

# `make test` runs instructor/tests too, which need the instructor tools and the grader's sandbox
test: $(INSTRUCTOR) sandbox-check

# the inner loop: unit tests, the hidden tests' bank with its planted answers, the reports, collecting; no notebook run
FAST_TESTS := tests $(addprefix instructor/tests/,test_bank.py test_grader_units.py test_grader_report.py \
              test_grader_slips.py test_collect.py test_collect_hostile.py test_course.py test_questions.py)

test-fast: $(INSTRUCTOR) ## the fast part of make test (under a minute): unit tests and the bank's planted answers
	DGM_MODE=quick DGM_DATA_SOURCE=embedded OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -q -n $(TEST_WORKERS) -m "not runs_notebooks" $(FAST_TESTS)

# bubblewrap from the distribution, where this account may install it (root, or sudo without a password)
sandbox-check:
	@command -v bwrap >/dev/null || instructor/install-bubblewrap.sh || { \
	  echo "error: bubblewrap is missing; the grader runs submissions in its sandbox, and it could not be installed here."; \
	  echo "Install it: sudo apt-get install bubblewrap (Debian/Ubuntu), sudo dnf install bubblewrap (Fedora)."; exit 1; }

student: $(INSTRUCTOR) ## build release/, the students' repository: STUDENT_REPO=<its URL> is required
	$(BIN)/python -m instructor.release --out release $(if $(STUDENT_REPO),--repository $(STUDENT_REPO))

key: $(INSTRUCTOR) sandbox-check ## grade the solution notebooks (quick) and write instructor/key.json, the models' reference
	$(BIN)/python -m instructor.grader key --jobs $(JOBS)

collect: $(INSTRUCTOR) ## FROM=canvas:<zip>|moodle:<zip>|github:<roster.csv> into SUBMISSIONS=<dir>, per course.toml
	$(BIN)/python -m instructor.collect $(FROM_KIND) $(FROM_FILE) --course $(COURSE) --out $(SUBMISSIONS) $(COLLECT_ARGS)

grade: $(INSTRUCTOR) sandbox-check ## grade SUBMISSIONS=<dir> (a folder per student) into grades/; -j 2: two at once; STUDENT=<name>: regrade one
	$(BIN)/python -m instructor.grader grade $(SUBMISSIONS) --grades $(GRADES) --jobs $(JOBS) \
	  $(if $(GIVEN_COURSE),--course $(COURSE)) $(if $(STUDENT),--student "$(STUDENT)") $(GRADE_ARGS)

gradebook: $(INSTRUCTOR) ## merge the TAs' points (grades/manual-points.csv) into grades/gradebook.csv, running nothing
	$(BIN)/python -m instructor.grader gradebook --grades $(GRADES)

similarity: $(INSTRUCTOR) ## compare SUBMISSIONS=<dir>'s answers pair by pair: grades/similarity/, instructors only
	$(BIN)/python -m instructor.similarity $(SUBMISSIONS) --out $(GRADES)/similarity $(SIMILARITY_ARGS)

html: $(INSTRUCTOR) ## render the solution notebooks to site/ for offline reading (instructors)
	$(BIN)/python -m instructor.site --out site

html-student: $(INSTRUCTOR) ## render release/ alone to student-site/: the students' site, no answer in it
	$(BIN)/python -m instructor.site --student release --out student-site

mutate: $(INSTRUCTOR) ## mutation testing of answers/*.py against the answer tests and the hidden tests (not in make test)
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	VENV=$(VENV) instructor/mutate.sh

bench: $(INSTRUCTOR) sandbox-check ## training throughput against the matmul rate, then grading throughput (minutes)
	$(BIN)/python -m instructor.bench.throughput
	$(BIN)/python -m instructor.bench.grading
