"""Fixtures of the instructors' tests, and the order in which `make test` hands its files to pytest-xdist's workers."""
import pytest

from instructor.tests.sandbox_area import Area


@pytest.fixture
def area(tmp_path):
    """A fresh job folder and outside folder."""
    return Area(tmp_path)


# make test's longest files, longest first (their seconds under `pytest --durations`). pytest-xdist gives each file to
# one worker (--dist loadfile), in the order collected when make test passes --no-loadscope-reorder: a long file that
# started last would run on alone while the other worker idles. (xdist's own reordering puts files with more tests
# first, which put these files, of 2 to 5 tests each, at the end.)
LONGEST_FIRST = ["instructor/tests/test_grader_reference.py", "instructor/tests/test_grader_cluster.py",
                 "instructor/tests/test_grader_hostile.py", "instructor/tests/test_check.py",
                 "instructor/tests/test_grader_models.py", "notebooks/04_vae.ipynb", "notebooks/06_gan_mnist.ipynb",
                 "instructor/tests/test_course_run.py", "instructor/tests/test_cpu_path.py",
                 "instructor/tests/test_release.py", "tests/test_tools.py", "instructor/tests/test_grader_slips.py"]


def pytest_collection_modifyitems(config, items):
    """The files of LONGEST_FIRST first, in that order; every other test after them, in the order collected."""
    rank = {path: index for index, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
