"""The numba decorator of the kernels' hot loops.

A hot loop is compiled without numba's runtime (NRT): it allocates nothing, and it is spared
NRT's atomic reference counting of its array arguments. numba counts a reference to an array
at every alias of it (each argument of an inlined call is one) and prunes the count pairs only
when they fall in one basic block or a simple diamond (numba issues #2345, #2350); in a loop of
branches most stay, and in the adaptive grid's loop they were over half of the time.

numba compiles a function that a loop calls with the loop's flags unless the function sets
its own, and keeps the first compilation for a signature: every function a hot loop calls
without inlining is marked too, so it is the same code whichever caller compiles it first.
"""

from __future__ import annotations

from numba import njit

# (`_nrt` is the maintainers' own switch for this: numba/numba#2345, #2350)
hot_njit = njit(cache=True, nogil=True, _nrt=False)
