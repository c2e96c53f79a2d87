"""Hidden tests, one module per assignment, registered by assignment id."""

from __future__ import annotations

import importlib

from autograder.checks.core import Assignment

#: The course's assignments, in chapter order (fixed by the exercise contract).
ASSIGNMENT_IDS: tuple[str, ...] = (
    "covariate_shift",
    "bn_math",
    "train_eval",
    "alternatives",
    "pitfalls",
)


class UnknownAssignment(LookupError):
    """An assignment id that is not one of :data:`ASSIGNMENT_IDS`."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"unknown assignment {name!r}; the assignments are: {', '.join(ASSIGNMENT_IDS)}"
        )
        self.name = name


def load_assignment(name: str) -> Assignment:
    """The hidden tests of assignment ``name``."""
    if name not in ASSIGNMENT_IDS:
        raise UnknownAssignment(name)
    module = importlib.import_module(f"autograder.checks.{name}")
    assignment = module.ASSIGNMENT
    if not isinstance(assignment, Assignment) or assignment.name != name:
        raise TypeError(f"autograder.checks.{name}.ASSIGNMENT is not the Assignment {name!r}")
    return assignment
