"""pytest set-up: import kiln from this source tree unless it is installed, and
check after every test that no kiln error was left pending (the bindings clear
each error they raise)."""
import os
import sys

import pytest

try:
    import kiln  # noqa: F401  (an installed package)
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import kiln  # noqa: F401

from kiln import _lib


@pytest.fixture(autouse=True)
def no_pending_kiln_error():
    _lib.clear_error()
    yield
    st = _lib.last_status()
    msg = _lib.last_error()
    _lib.clear_error()
    assert st == 0, f"a kiln error was left pending: {msg!r}"
