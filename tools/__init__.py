"""Tools of the repository: the notebook runner, the checks, the Colab cell, the .venv check."""
