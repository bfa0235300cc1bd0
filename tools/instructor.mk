# Instructor targets (docs/instructors.md), included by the Makefile: `make student`, `make key`, `make grade`,
# `make html`. The student release leaves this file out, so its Makefile has the students' targets only.
INSTRUCTOR  := $(VENV)/.instructor
SUBMISSIONS ?=
GRADES      ?= grades
GRADE_ARGS  ?=

.PHONY: instructor student key grade html

instructor: $(INSTRUCTOR) ## install the instructor-only tools (nbgrader, a local MathJax) into .venv

$(INSTRUCTOR): $(STAMP) requirements-instructor.txt
	$(BIN)/python -m pip install --quiet -r requirements-instructor.txt
	touch $@

# `make test` runs tests/test_course_edition.py too, which needs the instructor tools
test: $(INSTRUCTOR)

student: $(INSTRUCTOR) ## build release/, the students' repository (STUDENT_REPO=<url> points its Colab cells there)
	$(BIN)/python tools/release.py --out release $(if $(STUDENT_REPO),--repository $(STUDENT_REPO))

key: $(INSTRUCTOR) ## run the reference notebooks (quick settings) and write grading/key.json from grading/points.csv
	$(BIN)/python tools/grade.py key

grade: $(INSTRUCTOR) ## grade SUBMISSIONS=<dir> (a folder per student) into grades/; with -j 2, two notebooks at once
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<folder holding one folder per student> [-j 2]"; exit 2; }
	$(BIN)/python tools/grade.py grade $(SUBMISSIONS) --grades $(GRADES) $(if $(GRADE_FULL),--full) $(GRADE_ARGS)

html: $(INSTRUCTOR) ## render the executed notebooks to site/ for offline reading (HTML_RELEASE=1: release/ too)
	$(BIN)/python tools/html_pages.py --out site $(if $(HTML_RELEASE),--release)
