"""Shared pytest configuration: Hypothesis profiles, and the order of modules.

``CI`` set in the environment selects the ``ci`` profile (200 examples per
property); otherwise the ``dev`` profile runs fewer. Neither has a deadline:
the first example of a test may include Numba compilation.

Modules whose tests run nblstm in fresh processes (the asv suite, the
comparison command, dask's workers) run last: by then the rest of the suite
has compiled the kernels those processes need into Numba's on-disk cache,
which they load instead of compiling each kernel again.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=200, deadline=None, derandomize=False)
settings.register_profile("dev", max_examples=40, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

#: Test modules that start fresh processes which import nblstm and run models.
FRESH_PROCESS_MODULES = ("test_asv_suite.py", "test_compare_command.py", "test_dask.py")


def pytest_collection_modifyitems(items):
    """Move FRESH_PROCESS_MODULES to the end (a stable sort: the order within
    and among the other modules stays)."""
    items.sort(key=lambda item: item.path.name in FRESH_PROCESS_MODULES)
