"""mamba_jax.memory: process settings for a lean training process."""
import os
import subprocess
import sys

import pytest

from mamba_jax import memory

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _flags_after_configure(env):
    code = ("import os; from mamba_jax import memory; memory.configure_process(); "
            "print(os.environ.get('XLA_FLAGS', ''))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | env
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_configure_process_adds_the_memory_scheduler_flag_and_keeps_user_flags():
    flags = _flags_after_configure({"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"})
    assert "--xla_cpu_enable_fast_math=false" in flags
    assert "--xla_cpu_enable_concurrency_optimized_scheduler=false" in flags


def test_use_compilation_cache_defaults_to_the_user_cache_and_keeps_an_explicit_folder(
        monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    memory.use_compilation_cache()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / ".cache" / "mamba_jax" / "xla")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
    memory.use_compilation_cache()
    assert os.environ["JAX_COMPILATION_CACHE_DIR"] == "/elsewhere"


def test_configure_process_respects_explicit_flag_choices():
    ynn = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_DOT"
    flags = _flags_after_configure(
        {"XLA_FLAGS": f"--xla_cpu_enable_concurrency_optimized_scheduler=true {ynn}"})
    assert flags == f"--xla_cpu_enable_concurrency_optimized_scheduler=true {ynn}"


def test_configure_process_turns_off_ynn_reduce_fusions_only_on_jaxlib_0_10():
    flags = _flags_after_configure({})
    wanted = "--xla_cpu_experimental_ynn_fusion_type=-LIBRARY_FUSION_TYPE_REDUCE"
    assert (wanted in flags) == memory._jaxlib_version().startswith("0.10.")
    # the flag is accepted by this jaxlib: a computation runs with it
    code = ("from mamba_jax import memory; memory.configure_process(); import jax.numpy as jnp; "
            "print(float(jnp.sum(jnp.arange(255.0) * 2)))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "64770.0"


def test_rss_and_trim():
    before = memory.rss_mb()
    block = bytearray(64 * 2**20)  # touch 64 MiB
    block[::4096] = b"x" * len(block[::4096])
    after = memory.rss_mb()
    assert after["rss_mb"] >= before["rss_mb"] + 32
    assert after["peak_rss_mb"] >= after["rss_mb"]
    del block
    memory.release_free_memory()  # must not fail; returns memory where glibc is present
    assert memory.rss_mb()["rss_mb"] < after["rss_mb"]


_RELAUNCH_SCRIPT = """
import ctypes, os, resource, sys
sys.path.insert(0, {repo!r})
from mamba_jax import memory
print("START", sys.argv[1:], flush=True)
memory.relaunch_with_huge_pages()
libc = ctypes.CDLL("libc.so.6"); libc.malloc.restype = ctypes.c_void_p
n = 64 << 20
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = libc.malloc(n); ctypes.memset(p, 1, n)
print("FAULTS", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
print("TUNABLES", os.environ.get("GLIBC_TUNABLES", ""))
"""


def _relaunch(tmp_path, env):
    script = tmp_path / "entry.py"
    script.write_text(_RELAUNCH_SCRIPT.format(repo=REPO))
    env = {k: v for k, v in os.environ.items()
           if k not in ("GLIBC_TUNABLES", "MAMBA_JAX_HUGEPAGES")} | env
    out = subprocess.run([sys.executable, str(script), "--flag=1"], env=env, capture_output=True,
                         text=True, check=True).stdout
    faults = int(out.split("FAULTS")[1].split()[0])
    return out, faults


@pytest.mark.skipif(memory._libc() is None or not memory._thp_enabled(),
                    reason="needs glibc and transparent huge pages")
def test_relaunch_with_huge_pages_reexecs_once_and_cuts_page_faults(tmp_path):
    pages = (64 << 20) // 4096
    out, faults = _relaunch(tmp_path, {"MAMBA_JAX_HUGEPAGES": "0"})
    assert out.count("START") == 1 and "glibc.malloc.hugetlb" not in out
    assert faults > pages // 2  # 4 KiB pages: one fault each
    out, faults = _relaunch(tmp_path, {})
    # the program ran again from the start with the same arguments, once, with the tunable
    assert out.count("START ['--flag=1']") == 2
    assert "TUNABLES glibc.malloc.hugetlb=1" in out
    assert faults < pages // 20, faults
