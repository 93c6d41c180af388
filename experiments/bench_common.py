"""What every benchmark script records about the machine, and how it writes its JSON."""
from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp


def cpu_model() -> str:
    """The CPU's model name and its matmul-relevant ISA extensions (machines of one kind differ:
    the same 2-core VM has been an AMD Zen 4 and an Intel Xeon with AMX)."""
    name, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and name in ("unknown", "x86_64", ""):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    return f"{name} ({' '.join(isa)})" if isa else name


def machine_info() -> dict:
    """Backend, devices, cores, CPU model, platform and versions, for a benchmark's JSON."""
    return {
        "cpu": cpu_model(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_json(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")


def matmul_peak(dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a square n x n matmul in ``dtype`` with float32 accumulation, as
    ``mamba_jax.nets.matmul`` computes (a bf16-output bf16 matmul takes a slow path on XLA:CPU);
    best of ``repeats``. The CPU's practical peak for that dtype."""
    a = jax.random.normal(jax.random.key(0), (n, n)).astype(dtype)
    b = jax.random.normal(jax.random.key(1), (n, n)).astype(dtype)
    f = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
    f(a, b).block_until_ready()
    best = float('inf')
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9
