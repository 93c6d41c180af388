"""Peak host memory of the real training program (not a test).

Runs ``python -m experiments.train`` on the official point-robot config for a few rounds in a
fresh subprocess (empty compilation cache, so the compiler's transient peak is included), once
with the memory settings of ``mamba_jax.memory`` (the default) and once with stock XLA/glibc
settings, and reports each process's peak RSS (``VmHWM``) and its steady-state seconds per round.

    python -m experiments.bench_memory [--rounds 3] [--out bench_out/bench_memory.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from experiments import bench_common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_once(rounds: int, stock: bool, cache: bool = True, hugepages: bool = True,
             dtype: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("MAMBA_JAX_HUGEPAGES", None)
    hugepages = hugepages and not stock
    if not hugepages:  # what a process gets without the relaunch (stock: always)
        env["MAMBA_JAX_HUGEPAGES"] = "0"
    if not cache:
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env.pop("XLA_FLAGS", None)
    env.pop("MALLOC_ARENA_MAX", None)
    if stock:  # what a process gets without mamba_jax.memory
        env["XLA_FLAGS"] = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
        env["MALLOC_ARENA_MAX"] = str(8 * (os.cpu_count() or 1))  # glibc's default cap
        env["MAMBA_JAX_MALLOC_TRIM"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        env["JAX_COMPILATION_CACHE_DIR"] = os.path.join(tmp, "xla")  # compile from scratch
        workdir = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "experiments.train",
               "--config=experiments/configs/point_robot.py", f"--workdir={workdir}",
               f"--max_rounds={rounds}", "--no_progress", "--wandb_mode=disabled",
               ] + ([f"--config.compute_dtype={dtype}"] if dtype else [])
        t = time.time()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"training run failed:\n{proc.stderr[-3000:]}")
        with open(os.path.join(workdir, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if "round_seconds" in line]
    steady = [r["round_seconds"] for r in rows[1:]]  # round 1 includes compilation
    return {"settings": "stock" if stock else "mamba_jax.memory",
            "hugepages": hugepages,
            "compilation_cache": cache,
            "compute_dtype": summary.get("compute_dtype"),
            "peak_rss_mb": summary["peak_rss_mb"],
            "rss_mb_after_each_round": [r.get("rss_mb") for r in rows],
            "round_seconds_steady": sum(steady) / max(len(steady), 1),
            "process_wall_s": time.time() - t, "rounds": rounds}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(REPO, "bench_out", "bench_memory.json"))
    p.add_argument("--variants", default="ours,ours_nocache,stock",
                   help="comma list of: ours (mamba_jax.memory defaults), ours_nocache (same with "
                        "the persistent compilation cache off), ours_nohugepages (same without "
                        "the huge-page relaunch), stock (stock XLA/glibc settings); repeat "
                        "variants to alternate them; VARIANT:DTYPE sets compute_dtype (default: "
                        "the config's 'auto'), e.g. ours:float32,ours:bfloat16")
    args = p.parse_args()
    rows = []
    for spec in args.variants.split(","):
        variant, _, dtype = spec.partition(":")
        if variant not in ("ours", "ours_nocache", "ours_nohugepages", "stock"):
            p.error(f"--variants: unknown variant {variant!r}")
        if dtype not in ("", "auto", "float32", "bfloat16"):
            p.error(f"--variants: unknown compute_dtype {dtype!r} in {spec!r}")
        row = run_once(args.rounds, stock=variant == "stock", cache=variant != "ours_nocache",
                       hugepages=variant != "ours_nohugepages", dtype=dtype or None)
        row["variant"] = variant
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"machine": bench_common.machine_info(), "config": "point_robot (official)",
              "target_peak_rss_mb": 2048, "rows": rows,
              "note": "peak RSS of the whole training process incl. compilation (VmHWM)"}
    bench_common.write_json(args.out, result)


if __name__ == "__main__":
    main()
