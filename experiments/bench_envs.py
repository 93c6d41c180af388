"""Throughput of the pure-JAX meta-episode environments (random actions), as a table and JSON.

For every task and batch size B (parallel meta-episodes) one jitted function resets B
meta-episodes and scans ``MetaEpisode.step`` (vmapped) over whole meta-episodes, repeated
``n_meta`` times inside the same call, so dispatch overhead does not count. Two variants:

* ``env``: the actions are a fixed table of uniform random actions [K*H, B, A] drawn once before
  timing (measures the environment alone);
* ``env+rng``: a fresh random action is drawn with ``jax.random`` inside every step (what a
  random-policy prefill pays).

Compile time (lower + compile) is reported separately; steps/s is the best of ``reps`` timed calls
(``block_until_ready``), also per second of process CPU time, which other jobs sharing the
cores do not inflate. If ``experiments.bench_mjx`` exists and ``mujoco`` imports, its
``run(quick)`` rows are merged into the output, each MJX batch on one device and split over one
device per core (``envs.parallel``).

Usage: python -m experiments.bench_envs [--quick] [--out bench_out/bench_envs.json]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from envs.parallel import host_device_flag  # noqa: E402

# One XLA CPU device per core (before JAX's backend starts), so the MJX rows can also be
# measured with the batch split over the cores; the pure-JAX rows run on device 0 as before.
host_device_flag()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from envs.meta import MetaEpisode, make_meta, random_action  # noqa: E402
from experiments import bench_common  # noqa: E402

TASKS = ("point_robot", "point_robot_wind", "escape_room", "rooms")


def make_runner(meta: MetaEpisode, batch: int, n_meta: int, sample_actions: bool, unroll: int):
    """Returns run(key, actions [L, B, A]) -> total reward; plays n_meta x B meta-episodes."""
    reset = jax.vmap(meta.reset)
    step = jax.vmap(meta.step)

    def run(key, actions):
        def one_meta_episode(total, key):
            return total + play(key, actions), None

        total, _ = jax.lax.scan(one_meta_episode, jnp.zeros((), jnp.float32),
                                jax.random.split(key, n_meta))
        return total

    def play(key, actions):
        """One batch of meta-episodes -> summed reward."""
        k_reset, k_act = jax.random.split(key)
        ms = reset(jax.random.split(k_reset, batch))

        def body(carry, xs):
            ms, acc = carry
            if sample_actions:
                action = random_action(meta, xs, (batch,))
            else:
                action = xs
            ms = step(ms, action)
            return (ms, acc + ms.reward), None

        xs = jax.random.split(k_act, meta.length) if sample_actions else actions
        (ms, acc), _ = jax.lax.scan(body, (ms, jnp.zeros((batch,), jnp.float32)), xs, unroll=unroll)
        return jnp.sum(acc)

    return run


def bench_one(name: str, batch: int, target_steps: int, reps: int, sample_actions: bool,
              unroll: int) -> dict:
    meta = make_meta(name)
    n_meta = max(1, round(target_steps / (batch * meta.length)))
    run = jax.jit(make_runner(meta, batch, n_meta, sample_actions, unroll))
    actions = random_action(meta, jax.random.key(1), (meta.length, batch))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = run.lower(key, actions).compile()
    compile_s = time.perf_counter() - t0
    compiled(key, actions).block_until_ready()  # warm-up
    times, cpu_times = [], []
    for rep in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        compiled(jax.random.key(rep + 2), actions).block_until_ready()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    steps = n_meta * batch * meta.length
    return {
        "task": name,
        "variant": "env+rng" if sample_actions else "env",
        "batch": batch,
        "K": meta.K,
        "H": meta.H,
        "steps_per_call": steps,
        "compile_s": round(compile_s, 3),
        "best_s": round(min(times), 5),
        "steps_per_s": steps / min(times),
        "median_steps_per_s": steps / sorted(times)[len(times) // 2],
        # Process CPU time: robust to other jobs sharing the cores (wall time is not).
        "steps_per_cpu_s": steps / min(cpu_times),
        "load_avg_1min": os.getloadavg()[0],
    }


def target_steps(batch: int, quick: bool) -> int:
    """Env steps per timed call: enough that one call takes roughly 0.1-1 s on a small CPU."""
    per_env = 3_000 if quick else 30_000
    return min(batch * per_env, 300_000 if quick else 10_000_000)


def mjx_rows(quick: bool) -> list[dict]:
    try:
        import mujoco  # noqa: F401
        from experiments import bench_mjx
    except ImportError as err:
        print(f"[bench_envs] MJX benchmark skipped: {err}")
        return []
    return list(bench_mjx.run(quick, device_counts=sorted({1, jax.local_device_count()})))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--out", default="bench_out/bench_envs.json")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS))
    parser.add_argument("--batches", nargs="*", type=int, default=None)
    parser.add_argument("--unroll", type=int, default=1)
    parser.add_argument("--no-mjx", action="store_true")
    args = parser.parse_args(argv)

    batches = args.batches or ([1, 64] if args.quick else [1, 64, 1024, 4096])
    reps = 2 if args.quick else 3
    rows = []
    header = (f"{'task':18s} {'variant':8s} {'batch':>6s} {'compile_s':>9s} {'steps/s':>12s} "
              f"{'steps/cpu-s':>12s}")
    print(header)
    print("-" * len(header))
    for name in args.tasks:
        for variant in (False, True):
            for batch in batches:
                target = target_steps(batch, args.quick)
                row = bench_one(name, batch, target, reps, variant, args.unroll)
                rows.append(row)
                print(f"{name:18s} {row['variant']:8s} {batch:6d} {row['compile_s']:9.2f} "
                      f"{row['steps_per_s']:12.4g} {row['steps_per_cpu_s']:12.4g}", flush=True)
    if not args.no_mjx:
        rows += mjx_rows(args.quick)

    result = {
        "benchmark": "meta-episode env steps per second, random actions",
        "quick": args.quick,
        **bench_common.machine_info(),
        "rows": rows,
    }
    bench_common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
