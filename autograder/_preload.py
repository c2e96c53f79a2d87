"""Imported once by the grading fork server: everything a worker needs, loaded before any fork."""

from autograder.worker import preload

preload()
