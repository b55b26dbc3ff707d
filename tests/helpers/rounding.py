"""Unit roundoffs, for tolerances derived from error bounds rather than tuned to one CPU.

Two float computations done in a different order (blocks against full rows, AVX-512 against AVX2 kernels, one
thread against two) differ by a few unit roundoffs times the magnitude of what they add up, not of the result:
a KL of 0.015 computed as the difference of two cross-entropies near 5.7 carries the rounding of 5.7. Tests
state that magnitude and a small constant next to each tolerance, and keep a float64 twin that checks tightly.
"""

from __future__ import annotations

U32 = 2.0**-24  # float32 unit roundoff (half an ulp at 1)
U64 = 2.0**-53  # float64 unit roundoff
