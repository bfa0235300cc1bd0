"""Fixtures of the instructors' tests."""
import pytest

from instructor.tests.sandbox_area import Area


@pytest.fixture
def area(tmp_path):
    """A fresh job folder and outside folder."""
    return Area(tmp_path)
