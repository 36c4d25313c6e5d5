"""Keeping a long-running process's memory flat: glibc's malloc arenas and large blocks.

Two of glibc's defaults make a server's RSS climb in steps it never gives back, both
measured with ``bench/soak.py`` and ``memray``:

- **Arenas.** glibc gives each thread that allocates its own arena, up to eight per
  core, and returns little of them: a server whose thread pool (database work, parsing
  off the event loop) allocates from many threads grew +26 % in four minutes at 100
  events/s; flat with two arenas. Two cost nothing measurable here: the threads mostly
  wait on the database.
- **Large blocks.** A block of 128 KiB or more is mapped on its own and unmapped when
  freed, but the first such free raises that threshold to the block's size (up to
  32 MiB). Checking a password (Argon2, 19 MiB of working memory) is such a block: from
  the second check on it came from a thread's arena, whose top glibc neither shrinks nor
  trims, and the web process kept 19 MiB more from the first re-check of its cached
  credentials on (30 s into a load). A fixed threshold keeps every block of
  ``MMAP_THRESHOLD_BYTES`` or more mapped on its own, returned when freed.

An operator's ``MALLOC_ARENA_MAX`` or ``MALLOC_MMAP_THRESHOLD_`` wins: glibc reads it
itself, and this module leaves that setting alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt's parameter numbers (glibc's malloc.h)
M_ARENA_MAX = -8
M_MMAP_THRESHOLD = -3
#: the arenas a process may use, unless MALLOC_ARENA_MAX says otherwise
DEFAULT_ARENAS = 2
#: blocks of this size or more are mapped on their own and unmapped when freed
MMAP_THRESHOLD_BYTES = 1 << 20


def tune_allocator() -> set[str]:
    """Cap glibc's arenas at ``DEFAULT_ARENAS`` and fix its threshold for mapping large blocks
    at ``MMAP_THRESHOLD_BYTES``, each unless the operator's environment sets it; the names of
    the settings applied. Elsewhere than glibc: nothing."""
    if not sys.platform.startswith("linux"):
        return set()
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:
        return set()
    wanted = {
        "MALLOC_ARENA_MAX": (M_ARENA_MAX, DEFAULT_ARENAS),
        "MALLOC_MMAP_THRESHOLD_": (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
    }
    return {
        variable
        for variable, (parameter, value) in wanted.items()
        if variable not in os.environ and mallopt(parameter, value) == 1
    }
