"""The notebooks' answer code, exported so that later notebooks and the tests can import it.

Each answer is written once, in its question's notebook, in a cell that nbgrader's metadata marks as a solution, its
code between nbgrader's markers (### BEGIN SOLUTION / ### END SOLUTION). `make answers` (python -m answers.export)
copies those cells' imports and definitions, in order, into answers/<notebook name without its number>.py. Never
edit the generated modules by hand: edit the notebook and export again.
"""
