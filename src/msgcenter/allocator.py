"""Keeping a long-running process's memory flat: glibc's malloc arenas.

glibc gives each thread that allocates its own arena, up to eight per core, and
returns little of them to the system: a server whose thread pool (database work,
parsing off the event loop) allocates from many threads grows its RSS in steps of
tens of megabytes long after its warm-up (measured by ``bench/soak.py``: +26 % in
four minutes at 100 events/s; flat with two arenas). Two arenas cost nothing
measurable here: the threads mostly wait on the database.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt's parameter number for the arena limit (glibc's malloc.h)
M_ARENA_MAX = -8
#: the arenas a process may use, unless MALLOC_ARENA_MAX says otherwise
DEFAULT_ARENAS = 2


def limit_arenas() -> bool:
    """Cap glibc's malloc arenas at ``DEFAULT_ARENAS`` (an operator's ``MALLOC_ARENA_MAX`` wins,
    as glibc reads it itself); whether the cap was set. Elsewhere than glibc: nothing."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, DEFAULT_ARENAS) == 1
