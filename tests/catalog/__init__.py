"""Plausible wrong implementations, one module per assignment.

Each module defines ``WRONG: list[WrongImplementation]``. A wrong implementation
replaces the answer cell of one graded name in the source notebook; the test
``tests/test_catalog.py`` grades the result through the real grader and
requires it to lose points, only in its own cells, with feedback that names
the very mistake the entry ``shows`` (or quotes the message it is ``named_by``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WrongImplementation:
    """The full source of an answer cell that contains one plausible mistake."""

    name: str  # what the mistake is, as a test id
    target: str  # the grade id of the answer cell it replaces (the graded name)
    source: str
    #: Test cells of other graded names this mistake may also cost, each with the reason it cannot be
    #: helped (the other function cannot even be called without this one's output).
    couples: tuple[tuple[str, str], ...] = ()
    #: When the feedback names no known mistake: a substring of the message that names the problem by
    #: itself (a ProbeError such as "should return a tuple (out, cache)", an exception that says it all,
    #: or the source policy's "uses `batch_norm`"). ``tests/test_catalog.py`` requires one or the other.
    named_by: str = ""
    #: The known mistake (its name in ``autograder/references/<assignment>.py``) the feedback must name.
    #: An entry has either ``shows`` or ``named_by``.
    shows: str = ""
