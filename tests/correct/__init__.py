"""Correct implementations of every graded function, in several styles.

Each entry of ``tests/correct/<assignment>.py`` (``RIGHT``) replaces one answer
cell of the source notebook (the cell whose grade id is ``target``) with
``source``; graded by the real grader, the notebook must keep full marks.

They were written from the public contract (``exercise-contract.md``) and the
released notebooks only, and checked against PyTorch's own functions and
autograd. Versions of the same function differ in how they compute (staged
graph vs closed form, reductions vs reshape/permute vs einsum vs loops,
float64-then-cast), how they store state (dict, tuple, small class) and which
mechanism they use (hook lists vs dicts of handles, deepcopy vs
``torch.func.functional_call`` vs in-place with restore, ...).

One caveat for ``bn_math``: the cache that ``batchnorm_forward`` returns is
private to a submission, so a backward pass can only be run on the cache of a
forward written with it. ``bn_math.PAIRED_FORWARD`` maps each backward entry
to the forward entry it belongs with; to grade a backward entry, put both into
the notebook. The spatial entries named ``delegating-*`` build on the
notebook's own ``batchnorm_forward``/``batchnorm_backward`` (whatever pair the
notebook holds, the reference's included) and need no partner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorrectImplementation:
    """A correct answer cell for the graded name ``target``."""

    name: str  # a short id of the style, unique per assignment
    target: str  # the graded name whose answer cell it replaces (the cell's grade id)
    source: str  # the complete source of that answer cell
