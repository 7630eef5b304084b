"""Imports OR-Tools' CP-SAT so that it does not crash next to TensorFlow.

OR-Tools' CP-SAT segfaults when TensorFlow was imported first (DESIGN.md section 9: both bundle protobuf/absl
symbols). Loading OR-Tools' shared libraries with ``RTLD_DEEPBIND`` makes them resolve their own symbols first;
this costs nothing measurable. The import is lazy: only host TSP / CP-SAT users pay for it.
"""

from __future__ import annotations

import os
import sys
import threading

_lock = threading.Lock()


def cp_model():
    """Returns the ``ortools.sat.python.cp_model`` module, imported with ``RTLD_DEEPBIND``."""
    with _lock:
        if "ortools.sat.python.cp_model" in sys.modules:
            return sys.modules["ortools.sat.python.cp_model"]
        flags = sys.getdlopenflags()
        deepbind = getattr(os, "RTLD_DEEPBIND", 0)
        try:
            sys.setdlopenflags(os.RTLD_NOW | deepbind)
            from ortools.sat.python import cp_model as module
        finally:
            sys.setdlopenflags(flags)
        return module
