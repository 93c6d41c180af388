"""MJX task throughput vs native MuJoCo on the same model, as a table and JSON.

MJX: one jitted function resets P parallel meta-episodes (``envs.meta.MetaEpisode``, vmapped) and
scans ``S`` vmapped meta-episode steps with uniform random actions from a table drawn before
timing. Compile time (lower + compile) is reported separately; steps/s is the best of ``reps``
timed calls.

Native: a plain single-thread ``mujoco.mj_step`` loop (``frame_skip`` physics steps per env step,
a new random control per env step) on (a) the same tuned model MJX simulates and (b) the untuned
reference model from the XML.

Devices (``--devices``, default ``1,<cores>``): each MJX row is measured once per entry, the
batch split over that many CPU devices (``envs.parallel.split_over_devices``; the process exposes
one XLA device per core). One device is how XLA runs a plain ``jit(vmap(step))``: ~1.1 of the 2
cores busy for HalfCheetah. Native is single-thread in every row; its wall clock is the issue's
yardstick, and the per-CPU-second ratio shows what the extra core buys.

Both wall-clock and process CPU time are measured. On a shared machine the wall clock of either
side depends on what else runs; ``steps_per_cpu_s`` (env steps per CPU-second used by this process)
is the per-core figure, and the MJX/native ratios are given for both. The machine load average is
recorded with every row.

XLA flags are the training process's (``mamba_jax.memory.configure_process``: YNNPACK reduce fusions
off, memory-minimising scheduler), since that is how collection runs; ``--jaxlib_defaults`` keeps
jaxlib's own (HalfCheetah then runs 1.15-1.8x slower, measured in session 6).

Usage: python -m experiments.bench_mjx [--quick] [--jaxlib_defaults] [--devices 1,2]
       [--tasks cheetah_vel] [--out bench_out/bench_mjx.json]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mamba_jax import memory  # noqa: E402

# The XLA settings the training process runs collection with (experiments.train calls the same);
# --jaxlib_defaults measures with jaxlib's own. Must precede the first jax import.
if "--jaxlib_defaults" not in sys.argv:
    memory.configure_process()

from envs.parallel import host_device_flag  # noqa: E402

# One XLA CPU device per core (JAX is imported by now, but its backend starts only at the first
# computation), so rows with --devices > 1 can split the batch; rows with one device run exactly
# as before (a plain jit on device 0).
host_device_flag()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402
import numpy as np  # noqa: E402

from envs.meta import make_meta, random_action  # noqa: E402
from envs.parallel import place, split_over_devices  # noqa: E402
from experiments import bench_common  # noqa: E402

TASKS = ("reacher_goal", "cheetah_vel", "humanoid_dir")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn, reps: int):
    """Best wall time of ``reps`` calls and the CPU time of that call."""
    best = (float("inf"), 0.0)
    for _ in range(reps):
        c0, t0 = _cpu_s(), time.perf_counter()
        fn()
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        best = min(best, (wall, cpu))
    return best


def bench_mjx(task: str, parallel: int, steps: int, reps: int, devices: int = 1) -> dict:
    meta = make_meta(task)
    reset = jax.vmap(meta.reset)
    step = jax.vmap(meta.step)

    def run(keys, actions):  # keys [P], actions [S, P, A] -> return per env [P]
        ms = reset(keys)

        def body(carry, a):
            ms, acc = carry
            ms = step(ms, a)
            return (ms, acc + ms.reward), None

        (ms, acc), _ = jax.lax.scan(body, (ms, jnp.zeros((keys.shape[0],), jnp.float32)), actions)
        return acc

    actions = random_action(meta, jax.random.key(1), (steps, parallel))
    keys = jax.random.split(jax.random.key(0), parallel)
    if devices == 1:
        fn = jax.jit(run)
    else:
        fn = split_over_devices(run, in_axes=(0, 1), out_axes=0,
                                devices=jax.local_devices()[:devices])
        keys, actions = place(keys, 0, fn.mesh), place(actions, 1, fn.mesh)
    t0 = time.perf_counter()
    compiled = fn.lower(keys, actions).compile()
    compile_s = time.perf_counter() - t0
    compiled(keys, actions).block_until_ready()  # warm-up
    wall, cpu = _timed(lambda: compiled(keys, actions).block_until_ready(), reps)
    env = meta.env
    return {
        "task": task,
        "impl": "mjx",
        "parallel": parallel,
        "devices": devices,
        "steps_per_call": steps * parallel,
        "compile_s": round(compile_s, 2),
        "steps_per_s": steps * parallel / wall,
        "steps_per_cpu_s": steps * parallel / max(cpu, 1e-9),
        "options": {
            "iterations": env.solver_iterations,
            "ls_iterations": env.ls_iterations,
            "eulerdamp": env.eulerdamp,
            "contacts": getattr(env, "contacts", "disabled"),
            "solver": getattr(env, "solver", "xml"),
            "integrator": getattr(env, "integrator", "xml"),
        },
    }


def _terminates(env) -> bool:
    """Whether the task ends a sub-episode early (humanoid: torso height out of range)."""
    return hasattr(env, "healthy_z_min")


def bench_native(task: str, steps: int, reps: int, reference: bool) -> dict:
    env = make_meta(task).env
    model = env.reference_mj_model if reference else env.mj_model
    data = mujoco.MjData(model)
    # the env's ctrl for a uniform random action (humanoid: ctrl = 0.4 * action)
    scale = getattr(env, "action_scale", 1.0)
    ctrl = scale * np.random.default_rng(0).uniform(-1, 1, (steps, model.nu))
    # A task that terminates (humanoid: torso height outside [1, 2]) restarts from the initial
    # pose, as the meta-episode does; a fallen humanoid would otherwise sink through the floor.
    terminates = _terminates(env)

    def loop():
        mujoco.mj_resetData(model, data)
        for a in ctrl:
            data.ctrl[:] = a
            for _ in range(env.frame_skip):
                mujoco.mj_step(model, data)
            if terminates and not env.healthy_z_min <= data.qpos[2] <= env.healthy_z_max:
                mujoco.mj_resetData(model, data)

    loop()
    wall, cpu = _timed(loop, reps)
    return {
        "task": task,
        "impl": "native",
        "model": "reference (untuned)" if reference else "tuned (same as MJX)",
        "parallel": 1,
        "steps_per_call": steps,
        "compile_s": 0.0,
        "steps_per_s": steps / wall,
        "steps_per_cpu_s": steps / max(cpu, 1e-9),
    }


def bench_native_threads(task: str, nthread: int, batch: int, steps: int, reps: int) -> dict:
    """Native MuJoCo on ``nthread`` threads (``mujoco.rollout``): ``batch`` independent rollouts
    of ``steps`` env steps with uniform random controls, for comparison with MJX on as many
    devices. Tasks that terminate (``_terminates``: humanoid) are skipped by the caller, since
    rollout cannot reset."""
    from mujoco import rollout as mj_rollout
    env = make_meta(task).env
    model = env.mj_model
    datas = [mujoco.MjData(model) for _ in range(nthread)]
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, datas[0], state0, spec)
    init = np.tile(state0, (batch, 1))
    scale = getattr(env, "action_scale", 1.0)
    ctrl = scale * np.random.default_rng(0).uniform(-1, 1, (batch, steps, model.nu))
    ctrl = np.repeat(ctrl, env.frame_skip, axis=1)  # one control per physics step
    with mj_rollout.Rollout(nthread=nthread) as pool:
        def go():
            pool.rollout([model] * batch, datas, init, ctrl, nstep=steps * env.frame_skip)
        go()
        wall, cpu = _timed(go, reps)
    return {
        "task": task,
        "impl": "native",
        "model": f"tuned, {nthread} threads",
        "parallel": batch,
        "threads": nthread,
        "steps_per_call": steps * batch,
        "compile_s": 0.0,
        "steps_per_s": steps * batch / wall,
        "steps_per_cpu_s": steps * batch / max(cpu, 1e-9),
    }


def run(quick: bool = False, tasks=TASKS, device_counts=(1,)) -> list[dict]:
    """Benchmark rows: task, impl ('mjx'|'native'), parallel, steps_per_s, compile_s and, for MJX
    rows, ratio_mjx_to_native (wall) and ratio_mjx_to_native_per_cpu against native on the tuned
    model (and, in full runs, ``ratio_mjx_to_reference_native_per_cpu`` against native MuJoCo on
    the untuned reference model, i.e. the simulator settings the original task used)."""
    rows = []
    reps = 2 if quick else 3
    for task in tasks:
        heavy = task.startswith(("cheetah", "humanoid"))
        native = bench_native(task, 500 if quick else 4000, reps, reference=False)
        rows.append(native)
        reference = None if quick else bench_native(task, 4000, reps, reference=True)
        if reference is not None:
            rows.append(reference)
        threads = max(device_counts)
        if threads > 1 and not _terminates(make_meta(task).env):
            rows.append(bench_native_threads(task, threads, 64, 50 if quick else 400, reps))
        if quick:
            plan = [(1, 50), (64, 20)]
        elif task.startswith("cheetah"):
            plan = [(1, 400), (64, 100), (256, 50), (1024, 20)]
        elif heavy:
            plan = [(1, 400), (64, 100), (256, 50)]
        else:
            plan = [(1, 600), (64, 200), (1024, 50)]
        for parallel, steps in plan:
            for ndev in device_counts:
                if parallel % ndev:
                    continue
                row = bench_mjx(task, parallel, steps, reps, ndev)
                row["ratio_mjx_to_native"] = row["steps_per_s"] / native["steps_per_s"]
                row["ratio_mjx_to_native_per_cpu"] = (row["steps_per_cpu_s"]
                                                      / native["steps_per_cpu_s"])
                if reference is not None:
                    row["ratio_mjx_to_reference_native_per_cpu"] = (
                        row["steps_per_cpu_s"] / reference["steps_per_cpu_s"])
                rows.append(row)
                print(f"  [bench_mjx] {task} mjx P={parallel} devices={ndev}: "
                      f"{row['steps_per_s']:.4g} steps/s, {row['steps_per_cpu_s']:.4g} per CPU-s, "
                      f"compile {row['compile_s']}s", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    for row in rows:
        row["load_avg_1min"] = load
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    parser.add_argument("--jaxlib_defaults", action="store_true",
                        help="jaxlib's default XLA flags instead of the training process's")
    parser.add_argument("--out", default="bench_out/bench_mjx.json")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma list of MJX tasks")
    parser.add_argument("--devices", default=None,
                        help="comma list of device counts to split each MJX batch over "
                             "(default: 1 and all local devices, i.e. one per CPU core on CPU)")
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {unknown}; valid: {', '.join(TASKS)}")
    if args.devices is None:
        args.devices = f"1,{jax.local_device_count()}"
    try:
        counts = sorted({int(d) for d in args.devices.split(",")})
    except ValueError:
        parser.error(f"--devices: expected a comma list of integers, got {args.devices!r}")
    if counts[0] < 1 or counts[-1] > jax.local_device_count():
        parser.error(f"--devices: each count must be in [1, {jax.local_device_count()}] (the "
                     f"devices this process has), got {args.devices!r}")
    rows = run(args.quick, tasks, counts)
    header = (f"{'task':14s} {'impl':7s} {'model':22s} {'P':>5s} {'dev':>3s} {'compile_s':>9s}"
              f" {'steps/s':>10s}"
              f" {'per CPU-s':>10s} {'mjx/native':>10s} {'per CPU':>8s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['task']:14s} {r['impl']:7s} {r.get('model', ''):22s} {r['parallel']:5d} "
              f"{r.get('devices', r.get('threads', 1)):3d} "
              f"{r['compile_s']:9.2f} {r['steps_per_s']:10.4g} {r['steps_per_cpu_s']:10.4g} "
              f"{r.get('ratio_mjx_to_native', float('nan')):10.3f} "
              f"{r.get('ratio_mjx_to_native_per_cpu', float('nan')):8.3f}")
    result = {
        "benchmark": "MJX meta-episode env steps/s (random actions) vs native mj_step, same model",
        "quick": args.quick,
        **bench_common.machine_info(),
        "mujoco": mujoco.__version__,
        "rows": rows,
    }
    bench_common.write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
