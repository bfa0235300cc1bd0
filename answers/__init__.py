"""The notebooks' answer code, exported so that tests (and mutation testing) can import it.

Each answer is written once, in its question's notebook, in a code cell that holds its solution between
nbgrader's markers (### BEGIN SOLUTION / ### END SOLUTION). `make answers` (python -m answers.export)
copies those cells, in order, into answers/<notebook name without its number>.py; `tests/test_answers.py`
fails when a module here differs from its notebook. Never edit the generated modules by hand.
"""
