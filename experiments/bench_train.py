"""Benchmark of the whole training system at the official point-robot config (not a test).

Measures on this machine, in one process:
  * env frames/s including training (steady-state rounds: 10 meta-episodes + 10 updates),
  * seconds per update and its batch shape, collection seconds per 1000 frames,
  * XLA's flop estimate of one update and the achieved fraction of the float32 / bfloat16
    matmul peak measured in the same run,
  * peak resident memory,
  * seconds per update when it trains on the first L steps of each meta-episode (the
    wm-horizon buckets of tasks with a schedule: Rooms, Reacher, Humanoid; ``--bucket_lengths``),
for compute_dtype float32 and bfloat16. Writes JSON (default bench_out/bench_train.json).

    python -m experiments.bench_train [--quick] [--out PATH] [--dtypes float32,bfloat16]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from mamba_jax import memory

if __name__ == "__main__":
    memory.relaunch_with_huge_pages()  # 2 MiB pages for XLA's per-call temp buffers (mamba_jax.memory)

memory.configure_process()  # the training entry points' process settings

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from experiments import bench_common
from experiments.configs import point_robot
from mamba_jax import collect as collect_lib
from mamba_jax import replay, trainer


def _time(fn, reps):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def _say(msg: str) -> None:
    """Progress line (flushed), so a run cut off by a time limit still shows what it measured."""
    print(f"[bench_train] {msg}", flush=True)


def bench_buckets(lengths, quick: bool) -> list:
    """Seconds per update (float32, point-robot model and batch) on the first L steps of each
    sampled meta-episode, as ``Phases.round`` runs it while the wm-horizon schedule is at <= L."""
    config = point_robot.get_config()
    config.wandb_mode = "disabled"
    config.prefill = 10
    setup = trainer.make_setup(config)
    run = jax.jit(lambda r: trainer.prefill(setup, r))(trainer.init_run_state(setup, 0))
    phases = trainer.compile_phases(setup)
    rows = []
    for length in lengths:
        fn = phases.update_at(length)
        wm_h = jnp.int32(length)
        carry = (run.train, run.nonfinite_streak, run.nonfinite_total)
        t0 = time.perf_counter()
        compiled = fn.compile(carry, run.replay, jax.random.PRNGKey(1), wm_h)
        compile_s = time.perf_counter() - t0
        times = []
        for i in range(3 if quick else 6):
            copy = jax.tree.map(jnp.copy, carry)  # the update donates its carry
            jax.block_until_ready(copy)
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(copy, run.replay, jax.random.PRNGKey(2 + i), wm_h))
            times.append(time.perf_counter() - t0)
        rows.append({"length": length, "compile_s": compile_s,
                     "update_s": statistics.median(times[1:]), "update_s_all": times})
        _say(f"update on the first {length} of {setup.length} steps: "
             f"{rows[-1]['update_s']:.3f} s (compiled in {compile_s:.0f} s)")
    return rows


def bench(dtype: str, quick: bool) -> dict:
    config = point_robot.get_config()
    config.compute_dtype = dtype
    config.wandb_mode = "disabled"
    if quick:
        config.prefill = 10
    setup = trainer.make_setup(config)
    run = trainer.init_run_state(setup, 0)
    run = jax.jit(lambda r: trainer.prefill(setup, r))(run)
    c = setup.config

    # one update
    batch = replay.sample(run.replay, jax.random.PRNGKey(1), c.batch_size, setup.replay_shards)
    wm_h = trainer.wm_horizon_for(setup, run.frames)
    update = jax.jit(lambda t, b, k: trainer.guarded_update(setup, t, b, k, wm_h)[0])
    t0 = time.perf_counter()
    compiled = update.lower(run.train, batch, jax.random.PRNGKey(2)).compile()
    compile_update = time.perf_counter() - t0
    _say(f"{dtype}: update compiled in {compile_update:.1f} s")
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", 0.0)) if cost else 0.0
    state = run.train
    jax.block_until_ready(compiled(state, batch, jax.random.PRNGKey(3)))
    reps = 3 if quick else 8
    t_update, _ = _time(lambda: compiled(state, batch, jax.random.PRNGKey(3)), reps)
    _say(f"{dtype}: update {t_update:.4f} s")

    # collection alone (10 meta-episodes with the agent's sampling policy)
    def col(train, key):
        policy = collect_lib.agent_policy(setup.agent, train, mode=False)
        carry = setup.agent.initial_carry(train, c.num_envs)
        return collect_lib.collect(setup.meta, policy, carry, key, c.num_envs)[0].rewards
    col = jax.jit(col)
    t0 = time.perf_counter()
    jax.block_until_ready(col(state, jax.random.PRNGKey(4)))
    compile_collect = time.perf_counter() - t0
    t_collect, _ = _time(lambda: col(state, jax.random.PRNGKey(5)), 3)
    _say(f"{dtype}: collection compiled in {compile_collect:.1f} s, {t_collect:.4f} s per round")
    frames_per_round = c.num_envs * setup.length

    # whole rounds (collection + replay insert, then the updates), steady state
    phases = trainer.compile_phases(setup)
    t0 = time.perf_counter()
    run, m = phases.round(run)
    jax.block_until_ready(m)
    compile_round = time.perf_counter() - t0
    _say(f"{dtype}: first round (compiles the round) {compile_round:.1f} s")
    round_times = []
    for _ in range(2 if quick else 5):
        t0 = time.perf_counter()
        run, m = phases.round(run)
        jax.block_until_ready(m)
        round_times.append(time.perf_counter() - t0)
    t_round = statistics.median(round_times)
    return {
        "compute_dtype": dtype,
        "batch_shape": [c.batch_size, setup.length],
        "updates_per_round": setup.updates_per_round,
        "frames_per_round": frames_per_round,
        "compile_update_s": compile_update,
        "compile_collect_s": compile_collect,
        "compile_round_s": compile_round,
        "update_s": t_update,
        "collect_s_per_1000_frames": t_collect / frames_per_round * 1000,
        "round_s": t_round,
        "frames_per_s_with_training": frames_per_round / t_round,
        "collection_fraction_of_wall": t_collect / t_round,
        "xla_flops_per_update": xla_flops,
        "xla_gflops_per_s": xla_flops / t_update / 1e9,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default="bench_out/bench_train.json")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--bucket_lengths", default="64,128,192,300",
                   help="comma-separated L for the per-length update times ('' to skip)")
    args = p.parse_args()
    peak32 = bench_common.matmul_peak(jnp.float32, repeats=10)
    peak16 = bench_common.matmul_peak(jnp.bfloat16, repeats=10)
    _say(f"matmul peak {peak32:.0f} GFLOP/s float32, {peak16:.0f} bfloat16")
    rows = []
    for dtype in args.dtypes.split(","):
        r = bench(dtype, args.quick)
        peak = peak16 if dtype == "bfloat16" else peak32
        r["xla_fraction_of_peak"] = r["xla_gflops_per_s"] / peak
        rows.append(r)
        print(json.dumps(r, indent=1))
    out = {
        "machine": bench_common.machine_info(),
        "matmul_peak_gflops": {"float32": peak32, "bfloat16": peak16},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "official_pytorch_reference": {"frames_per_s": 71, "update_s": 3.4,
                                       "note": "team measurement on this machine class, spec 12.5"},
        "rows": rows,
        "update_s_by_length": bench_buckets(
            [int(x) for x in args.bucket_lengths.split(",") if x], args.quick),
        "note": "XLA's cost_analysis may count a lax.scan body once; treat xla_flops as a lower bound.",
    }
    bench_common.write_json(args.out, out)
    print(f"peak f32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s, peak RSS {out['peak_rss_mb']:.0f} MB")
    for r in rows:
        print(f"{r['compute_dtype']:>9}: {r['frames_per_s_with_training']:.0f} frames/s with training, "
              f"update {r['update_s']:.3f} s, collection {r['collection_fraction_of_wall']:.0%} of wall")


if __name__ == "__main__":
    main()
