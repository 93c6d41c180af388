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
