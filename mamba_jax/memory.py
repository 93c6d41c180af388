"""Host-memory settings for the training process (peak RSS on CPU hosts).

Measured on the point-robot config (2-core CPU, ``/tmp``-free probe, see the issue note): the
training process peaked at 3.4 GB RSS with stock settings. Three things made up the excess:

* XLA's CPU scheduler optimised for concurrency keeps more buffers alive at once: the update's
  preallocated temp buffer was 937 MB. The memory-minimising scheduler
  (``--xla_cpu_enable_concurrency_optimized_scheduler=false``) gives 682 MB for the same program.
* glibc keeps one malloc arena per thread that ever allocated (up to 8 x cores); memory freed by
  XLA's compiler threads stays in those arenas. Capping the arenas at 2 and trimming the heap
  after each compilation returns ~0.9 GB to the OS.
* What remains is the compiler's transient peak while the round program compiles (~1.4 GB),
  which these settings do not change.

``configure_process`` must run before JAX creates its CPU backend (first computation or device
query); the entry points call it first thing. Everything here is best effort and a no-op on
platforms without glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_M_ARENA_MAX = -8  # glibc mallopt parameter number


def _libc():
    try:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name or "libc.so.6")
        lib.malloc_trim  # glibc only
        return lib
    except (OSError, AttributeError):
        return None


def configure_process(arenas: int = 2) -> None:
    """Memory-lean defaults: XLA's memory-minimising CPU scheduler (unless ``XLA_FLAGS`` already
    sets the flag) and at most ``arenas`` glibc malloc arenas. Call before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _SCHEDULER_FLAG not in flags:
        os.environ["XLA_FLAGS"] = (flags + f" {_SCHEDULER_FLAG}=false").strip()
    lib = _libc()
    if lib is not None and "MALLOC_ARENA_MAX" not in os.environ:
        lib.mallopt(_M_ARENA_MAX, int(arenas))


def release_free_memory() -> None:
    """Returns freed heap pages to the OS (``malloc_trim``); call after compiling.
    ``MAMBA_JAX_MALLOC_TRIM=0`` turns it off (for before/after measurements)."""
    if os.environ.get("MAMBA_JAX_MALLOC_TRIM", "1") == "0":
        return
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def rss_mb() -> dict:
    """{'rss_mb': current resident set, 'peak_rss_mb': high-water mark} of this process, in MiB
    (Linux ``/proc``; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_mb"] = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    out["peak_rss_mb"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out
