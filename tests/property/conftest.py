"""Hypothesis settings for the property tests: deterministic and bounded by default.

The ``ci`` profile (the default) derandomizes every test, so a run is the same on
every machine and twice in a row, keeps no example database, and caps the examples
so that the whole tier stays within seconds. For a deeper local search, pick the
``explore`` profile: random examples, many more of them, and failing ones kept in
``.hypothesis/`` to be replayed first next time::

    MSGCENTER_HYPOTHESIS_PROFILE=explore .venv/bin/pytest tests/property
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    max_examples=60,
    # the shared CI machine runs four workers: wall-clock deadlines would be flaky
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "explore",
    max_examples=2_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile(os.environ.get("MSGCENTER_HYPOTHESIS_PROFILE", "ci"))
