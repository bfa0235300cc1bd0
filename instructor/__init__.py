"""Instructor-only tools: the autograder and its helpers."""
import tools  # noqa: F401  (before any nbformat: it keeps jsonschema from compiling grammars that no notebook uses)
