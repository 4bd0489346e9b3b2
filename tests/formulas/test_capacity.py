"""formulas/capacity.py's search for the longest length a request fits at (longest_fitting)."""

import math


def test_longest_fitting_is_the_last_length_a_growing_request_fits():
    """formulas/capacity.py longest_fitting, the search capacity's engine rules and the draft model's pool share: a
    request of n tokens taking 3 n + 10 bytes in 1,000 bytes fits up to n = 330 (3 x 330 + 10 = 1,000); none fits in
    12 bytes (3 + 10 = 13); a request that stops growing past 64 tokens fits at any length (inf)."""
    from kvcalc.formulas.capacity import longest_fitting

    assert longest_fitting(lambda n: 3 * n + 10 <= 1000, 2**50) == 330
    assert longest_fitting(lambda n: 3 * n + 10 <= 12, 2**50) == 0
    assert longest_fitting(lambda n: 3 * min(n, 64) <= 1000, 2**20) == math.inf
