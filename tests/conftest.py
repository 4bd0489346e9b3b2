"""pytest configuration shared by the test files.

Hypothesis profiles: the default profile is hypothesis's own, untouched (CI's behaviour: every test file sets its
own fixed-seed settings). `long` is for whoever wants an hour of fuzzing (kvcalc issue 23, item 4):

    python -m pytest tests/test_fuzz_long.py --hypothesis-profile=long -p no:cacheprovider

or `python benchmarks/fuzz_long.py --minutes 60`, which reruns that with fresh random seeds and writes a summary.
Under `long` the property tests of tests/test_fuzz_long.py draw random (not derandomized) examples, many of them;
everywhere else the profile changes nothing that a test's own @settings fixes.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "long",
    # per test and per run; benchmarks/fuzz_long.py reruns with new seeds until its time is up (and sets this)
    max_examples=int(os.environ.get("KVCALC_FUZZ_EXAMPLES", "400")),
    derandomize=False,
    deadline=None,
    database=None,  # a finding is reported by the run (and the script's summary), not replayed from a cache
    suppress_health_check=list(HealthCheck),
    print_blob=True,  # a failure prints @reproduce_failure(...) to replay it exactly
)
