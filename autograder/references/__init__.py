"""What only the grader may hold: each assignment's PyTorch reference and its known mistakes.

One module per assignment, ``references/<assignment>.py``, with ``reference()``
(the namespace of correct implementations the probes run on) and
``MISTAKES`` (name -> :class:`~autograder.checks.core.Mistake`). The sandbox
never sees these modules; :func:`autograder.spec.load_spec` joins them with the
probes of ``checks/<assignment>.py``.
"""
