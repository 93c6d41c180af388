"""A/B timing of one update: the working tree's ``mamba_jax`` against another git revision's, in ONE
process (not a test).

This VM's speed drifts by ~10% over minutes, more than most single changes are worth, so two
benchmark runs minutes apart cannot tell them apart. Here both versions are compiled in the same
process and their updates alternate, so drift hits both alike.

    python -m experiments.bench_update_ab --ref=HEAD~3 [--reps=8] [--out bench_out/update_ab.json]

The reference revision's ``mamba_jax`` is exported with ``git archive`` into a temporary folder as
the package ``mamba_ref``. Both build the official point-robot agent (B=16 x T=300, imagination
horizon 2, window heads), and each runs ``Agent.train_step`` on the same random batch. XLA flags
are the process's (``memory.configure_process``), the same for both.
"""
from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from mamba_jax import memory

if __name__ == "__main__":
    memory.relaunch_with_huge_pages()  # as the training entry points run
memory.configure_process()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from experiments import bench_common  # noqa: E402
from experiments.bench_agent import make_batch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def export_reference(rev: str, dest: str) -> str:
    """Writes ``rev``'s mamba_jax package to ``dest/mamba_ref`` (imports renamed); returns dest."""
    blob = subprocess.run(["git", "archive", rev, "mamba_jax"], cwd=REPO, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    os.rename(os.path.join(dest, "mamba_jax"), os.path.join(dest, "mamba_ref"))
    for name in os.listdir(os.path.join(dest, "mamba_ref")):
        if name.endswith(".py"):
            path = os.path.join(dest, "mamba_ref", name)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(text.replace("mamba_jax", "mamba_ref"))
    return dest


def build(package: str, batch, key, wm_h, dtype: str = "float32"):
    agent_mod = importlib.import_module(package + ".agent")
    config_mod = importlib.import_module(package + ".config")
    cfg = config_mod.agent_config("official", compute_dtype=dtype, enc_mlp_layers=4,
                                  dec_mlp_layers=4, imag_horizon=2, reconstruction_window=3)
    agent = agent_mod.Agent(cfg, obs_dim=2, action_dim=2, discrete=False)
    state = agent.init(jax.random.key(0))
    t0 = time.perf_counter()
    compiled = jax.jit(agent.train_step).lower(state, batch, key, wm_h).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(state, batch, key, wm_h))  # warm-up
    temp = getattr(compiled.memory_analysis(), "temp_size_in_bytes", 0) / 1e6
    return compiled, state, compile_s, temp


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="git revision to compare against")
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--out", default="bench_out/update_ab.json")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="compute_dtype of both builds")
    args = p.parse_args()
    rev = subprocess.run(["git", "rev-parse", args.ref], cwd=REPO, check=True, capture_output=True,
                         text=True).stdout.strip()
    batch = jax.tree.map(jnp.asarray, make_batch(16, 300, 2, 2))
    key, wm_h = jax.random.key(1), jnp.int32(300)
    with tempfile.TemporaryDirectory() as tmp:
        sys.path.insert(0, export_reference(rev, tmp))
        versions = {f"ref {rev[:10]}": build("mamba_ref", batch, key, wm_h, args.dtype),
                    "working tree": build("mamba_jax", batch, key, wm_h, args.dtype)}
        times = {k: [] for k in versions}
        for _ in range(args.reps):
            for k, (compiled, state, _, _) in versions.items():
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(state, batch, key, wm_h))
                times[k].append(time.perf_counter() - t0)
    rows = {}
    for k, (_, _, compile_s, temp) in versions.items():
        rows[k] = {"update_s_median": statistics.median(times[k]), "update_s_all": times[k],
                   "compile_s": compile_s, "temp_mb": temp}
        print(f"{k:>16}: update {rows[k]['update_s_median']:.3f} s (median of {args.reps}), "
              f"min {min(times[k]):.3f} s, temp buffer {temp:.0f} MB")
    bench_common.write_json(args.out, {"machine": bench_common.machine_info(), "ref": rev,
                                       "compute_dtype": args.dtype, "rows": rows})


if __name__ == "__main__":
    main()
