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

One speed setting rides along (measured on the official point-robot update, 2-core CPU, jaxlib
0.10.2): XLA:CPU's YNNPACK reduction fusions are slow on this program's [8192, 255] two-hot
reductions (e.g. 25 ms for a multiply-multiply-sum that should take ~3 ms), so
``--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE`` hands reductions back to
XLA's own emitter: the whole update ran 17% faster in a same-process A/B
(``experiments/bench_update_ab.py``), with 80-100 MB less temp memory. It is only added for
jaxlib 0.10.x (the flag is experimental; an unknown flag aborts XLA) and never when
``XLA_FLAGS`` already sets it.

Transparent huge pages for glibc's large blocks (``relaunch_with_huge_pages``). XLA:CPU allocates
a program's temp buffer at every call (523 MB for the official point-robot update) and frees it at
the end; glibc serves blocks that large with a fresh ``mmap`` and returns them with ``munmap``, so
every update faulted its temp buffer in again, 4 KiB at a time: ~150k minor page faults and
~0.3 s of kernel time per update (``getrusage``). glibc's ``glibc.malloc.hugetlb=1`` tunable asks
the kernel for 2 MiB pages on those blocks (``madvise``, honoured where
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always`` or ``madvise``): ~450 faults per
update. Three process pairs on the update alone, median of 10 updates each: 1.56 -> 1.51,
1.43 -> 1.15 and 1.69 -> 1.60 s. Tunables are read only at process start, hence the relaunch.
Keeping freed blocks mapped instead (``M_MMAP_MAX=0``) removed the faults too and was faster in
one process, but the heap then fragmented: the training process's RSS rose from 1.3 to 1.9-2.5 GB.
Running a round's updates as one ``lax.scan`` (one temp buffer per round) was slower and peaked at
2.4 GB.

``configure_process`` must run before JAX creates its CPU backend (first computation or device
query); the entry points call it first thing. Everything here is best effort and a no-op on
platforms without glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_VALUE = "-LIBRARY_FUSION_TYPE_REDUCE"


def _jaxlib_version() -> str:
    try:
        from importlib import metadata
        return metadata.version("jaxlib")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return ""
_M_ARENA_MAX = -8  # glibc mallopt parameter number


def _libc():
    try:
        name = ctypes.util.find_library("c")
        lib = ctypes.CDLL(name or "libc.so.6")
        lib.malloc_trim  # glibc only
        return lib
    except (OSError, AttributeError):
        return None


def use_compilation_cache() -> None:
    """Points XLA's persistent compilation cache at ``~/.cache/mamba_jax/xla`` unless
    ``JAX_COMPILATION_CACHE_DIR`` is set: a resumed run, a sweep or a second reproduction call
    with the same shapes then reuses the compiled programs. Call before JAX's first compilation
    (the training entry points call it at import)."""
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "mamba_jax", "xla"))


def configure_process(arenas: int = 2) -> None:
    """Memory-lean defaults: XLA's memory-minimising CPU scheduler and, on jaxlib 0.10.x, no YNNPACK
    reduction fusions (each unless ``XLA_FLAGS`` already sets the flag), and at most ``arenas``
    glibc malloc arenas. Call before JAX's first computation."""
    flags = os.environ.get("XLA_FLAGS", "")
    if _SCHEDULER_FLAG not in flags:
        flags = (flags + f" {_SCHEDULER_FLAG}=false").strip()
    if _YNN_FLAG not in flags and _jaxlib_version().startswith("0.10."):
        flags = (flags + f" {_YNN_FLAG}={_YNN_VALUE}").strip()
    os.environ["XLA_FLAGS"] = flags
    lib = _libc()
    if lib is not None and "MALLOC_ARENA_MAX" not in os.environ:
        lib.mallopt(_M_ARENA_MAX, int(arenas))


_HUGETLB_TUNABLE = "glibc.malloc.hugetlb"


def _thp_enabled() -> bool:
    """Whether the kernel grants transparent huge pages to madvise'd memory."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def relaunch_with_huge_pages() -> None:
    """Re-executes this program once with ``GLIBC_TUNABLES`` extended by
    ``glibc.malloc.hugetlb=1`` (see the module docstring), unless it is set already, glibc or
    transparent huge pages are unavailable, or ``MAMBA_JAX_HUGEPAGES=0``. Call first thing in a
    ``__main__`` entry point (it replaces the process: same interpreter, same arguments)."""
    if os.environ.get("MAMBA_JAX_HUGEPAGES", "1") == "0":
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if _HUGETLB_TUNABLE in tunables or _libc() is None or not _thp_enabled():
        return
    os.environ["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, f"{_HUGETLB_TUNABLE}=1"]))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable] + sys.orig_argv[1:])


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
