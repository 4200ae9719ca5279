"""Shared pytest configuration: Hypothesis profiles.

``CI`` set in the environment selects the ``ci`` profile (200 examples per
property); otherwise the ``dev`` profile runs fewer. Neither has a deadline:
the first example of a test may include Numba compilation.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=False)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
