"""Test-session settings.

A persistent XLA compilation cache shared by this process and the subprocesses the tests start
(CLI runs, multi-device runs, the notebook): identical programs (same config, different workdir
or budget) are compiled once per test session instead of once per process. XLA is told to
compile quickly rather than optimise (the test programs are tiny).
"""
import os
import sys
import tempfile

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "mamba_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")
# Tests run tiny programs: compile them fast rather than optimise them (~30% less wall time).
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 "
                                   "--xla_llvm_disable_expensive_passes=true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
