"""mamba_jax.memory: process settings for a lean training process."""
import os
import subprocess
import sys

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


def test_configure_process_respects_an_explicit_scheduler_choice():
    flags = _flags_after_configure(
        {"XLA_FLAGS": "--xla_cpu_enable_concurrency_optimized_scheduler=true"})
    assert flags == "--xla_cpu_enable_concurrency_optimized_scheduler=true"


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
