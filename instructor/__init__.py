"""Instructor-only tools: the autograder and its helpers."""
