"""The host-side training driver: progress bar, logging, evaluation, checkpoints, resume, signals.

``train(config, workdir, resume)`` is what ``python -m experiments.train`` calls. The heavy work
happens in the jitted phases of ``mamba_jax.trainer``; this loop only dispatches rounds and writes
files between them.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any, Dict, Optional

import jax
import numpy as np

from mamba_jax import behaviour
from mamba_jax import checkpointing
from mamba_jax import logger as logger_lib
from mamba_jax import memory
from mamba_jax import trainer


class TrainingAborted(RuntimeError):
    """Training stopped because of repeated non-finite losses."""


class _StopFlag:
    """Turns SIGTERM/SIGINT into a request to checkpoint and stop after the current round."""

    def __init__(self):
        self.requested: Optional[str] = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread (e.g. a notebook worker)
                pass
        return self

    def _handle(self, signum, frame):
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class _CompileThenTrim:
    """A jitted phase compiled ahead of time on its first call, after which the compiler's freed
    heap is handed back to the OS before the program runs (so the compile-time peak and the
    run-time buffers do not add up; see ``mamba_jax.memory``)."""

    def __init__(self, fn):
        self._fn, self._compiled = fn, None

    def __call__(self, *args):
        if self._compiled is None:
            self._compiled = self._fn.lower(*args).compile()
            memory.release_free_memory()
        return self._compiled(*args)


def _i(x) -> int:
    """A run counter as int (with a seed axis all seeds share the same count)."""
    return int(np.asarray(x).reshape(-1)[0])


def _flatten_seeds(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Scalars stay; per-seed arrays [S] become their mean plus a ``<name>/per_seed`` list."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v)
        if v.ndim == 0:
            out[k] = float(v)
        else:
            out[k] = float(v.mean())
            out[f"{k}/per_seed"] = v.tolist()
    return out


def _checkpoint_state(run: trainer.RunState, with_replay: bool):
    return run if with_replay else run.replace(replay=None)


def _tuples(x):
    if isinstance(x, dict):
        return {k: _tuples(v) for k, v in x.items()}
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def load_run(workdir: str, step: Optional[int] = None, with_replay: bool = False):
    """Loads a trained run for analysis: ``(setup, run_state, meta)``.

    Reads ``<workdir>/config.json`` (the run's full config) and restores the latest (or ``step``)
    Orbax checkpoint into it; the replay buffer is dropped unless ``with_replay``. Works on any
    number of devices: a buffer saved split over another device count (``replay_shards``) is
    restored onto one device in its saved block layout. Raises ``FileNotFoundError`` (no config)
    or ``checkpointing.CheckpointError`` (no usable checkpoint).
    """
    config = load_config(workdir)
    setup = trainer.make_setup(config)
    run = jax.eval_shape(lambda: trainer.init_run_state(setup, config.seed))
    # explicit target shardings on this machine's devices (Orbax would otherwise use the saved ones)
    run = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       run, trainer.run_shardings(setup, run))
    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"),
                                         config.keep_checkpoints)
    shards = setup.replay_shards
    if config.checkpoint_replay:
        shards = int(checkpointing.read_meta(manager, step).get("fingerprint", {})
                     .get("replay_shards", 1))
        if shards != setup.replay_shards:  # saved on another device count: its layout, one device
            run = run.replace(replay=_abstract_replay(setup, config, shards))
    try:
        restored, meta = checkpointing.restore(
            manager, _checkpoint_state(run, config.checkpoint_replay),
            checkpointing.fingerprint_of(config, shards), step)
    finally:
        manager.close()
    if not with_replay:
        restored = restored.replace(replay=None)
    return setup, restored, meta


def load_config(workdir: str):
    """The full config a run folder was started with (``<workdir>/config.json``)."""
    from ml_collections import ConfigDict

    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {workdir} is not a run folder")
    with open(path) as f:
        return ConfigDict(_tuples(json.load(f)))


def fork_run(src: str, dst: str, config, step: Optional[int] = None,
             drop_unused: bool = False) -> Dict[str, Any]:
    """Branches a run: the ``src`` checkpoint (latest or ``step``) becomes ``dst``'s under ``config``.

    For one-change experiments from a point of a training run (e.g. continue round 98 with another
    ``agent.behavior_batch_length``): everything in the checkpoint (parameters, optimiser states,
    replay buffer, counters, RNG key) is kept, only the config changes, so the branch and the
    original's own continuation differ by that change alone. ``config`` must give the same
    checkpoint arrays (shapes and dtypes) as ``src``'s: a field that changes them (network
    sizes, K, H) is refused with a message naming the arrays. A change that only leaves arrays
    unused (``agent.reconstruction_window=0`` drops the window heads and their optimiser moments)
    needs ``drop_unused=True``; the dropped paths are recorded. ``dst`` gets
    ``config.json`` (the new config), the checkpoint, ``metrics.jsonl`` up to the fork point
    (so curves continue) and ``fork.json`` (source, step, changed fields); ``train(config, dst,
    resume=True)`` then continues it. ``src`` is only read; a ``dst`` that is not empty is refused
    with nothing written.

    Returns the ``fork.json`` record. Raises ``ValueError`` (incompatible config, no change,
    existing ``dst`` run) or ``checkpointing.CheckpointError`` (no usable ``src`` checkpoint).
    """
    ckpt_dst = os.path.join(dst, "checkpoints")
    if os.path.isdir(dst) and os.listdir(dst):
        raise ValueError(f"{dst} already holds files (a run?); a fork starts a new run folder: "
                         "choose another destination. Nothing was changed.")
    as_dict = lambda c: json.loads(c.to_json_best_effort())
    changed = {k: {"from": a, "to": b} for k, (a, b) in
               checkpointing.diff_fields(as_dict(load_config(src)), as_dict(config)).items()}
    if not changed:
        raise ValueError(f"the fork's config equals {src}'s: nothing to branch")
    setup = trainer.make_setup(config)  # validates the new config
    _, state, meta = load_run(src, step, with_replay=True)
    saved_shards = int(meta.get("fingerprint", {}).get("replay_shards", 1))
    if config.checkpoint_replay and saved_shards != setup.replay_shards:
        raise ValueError(f"{src} holds a replay buffer split over {saved_shards} devices; fork "
                         f"it on as many devices (here: {setup.replay_shards})")
    state = _checkpoint_state(state, config.checkpoint_replay)
    abstract = _checkpoint_state(
        jax.eval_shape(lambda: trainer.init_run_state(setup, config.seed)), config.checkpoint_replay)
    leaves = {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(state)}
    paths, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    want = {jax.tree_util.keystr(p): (x.shape, x.dtype) for p, x in paths}
    have = {k: (x.shape, x.dtype) for k, x in leaves.items()}
    diff = [f"{k}: {have.get(k, 'absent')} in {src}, {v} under the new config"
            for k, v in want.items() if have.get(k) != v]
    dropped = sorted(set(have) - set(want))
    if diff:
        raise ValueError(f"the changed fields ({', '.join(changed)}) change the checkpoint's "
                         f"arrays, so {src} cannot be continued under them; {len(diff)} differ, "
                         "e.g. " + "; ".join(diff[:3]))
    if dropped and not drop_unused:
        raise ValueError(f"under the changed fields ({', '.join(changed)}) {len(dropped)} arrays "
                         f"of {src} are unused (e.g. {'; '.join(dropped[:3])}); pass "
                         "drop_unused=True (--drop_unused) to branch without them")
    state = jax.tree_util.tree_unflatten(treedef, [leaves[jax.tree_util.keystr(p)]
                                                   for p, _ in paths])
    record = {"src": os.path.abspath(src), "step": int(meta["rounds"]),
              "updates": int(meta["updates"]), "frames": int(meta["frames"]), "changed": changed,
              "dropped_arrays": dropped}
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    rows_path = os.path.join(src, "metrics.jsonl")
    if os.path.exists(rows_path):
        with open(rows_path) as f, open(os.path.join(dst, "metrics.jsonl"), "w") as out:
            for line in f:
                if line.strip() and json.loads(line).get("updates", 0) <= record["updates"]:
                    out.write(line)
    manager = checkpointing.make_manager(ckpt_dst, config.keep_checkpoints)
    try:
        checkpointing.save(manager, record["step"], state, dict(
            meta, fingerprint=checkpointing.fingerprint_of(config, setup.replay_shards),
            forked_from=record, time=time.time()))
    finally:
        manager.close()
    with open(os.path.join(dst, "fork.json"), "w") as f:
        json.dump(record, f, indent=2, default=str)
    return record


def _abstract_replay(setup, config, shards: int):
    """Shapes of a replay buffer saved split over ``shards`` devices, placed on one device."""
    return trainer.abstract_replay(setup, trainer.replay_capacity(config, setup.length, shards),
                                   jax.sharding.SingleDeviceSharding(jax.devices()[0]))


def _render(setup, ev: Dict[str, np.ndarray], tasks, path: str, title: str) -> None:
    from envs import render

    env = setup.meta.env
    if not hasattr(env, "positions"):
        return
    task0 = jax.tree.map(lambda x: np.asarray(x)[0], tasks)
    positions = np.asarray(env.positions(ev["states"][0]))  # [T, 2] plane/grid coordinates
    render.render_meta_episode(env, positions, np.asarray(ev["sub_idx"][0]), task0, path,
                               title=title)


def train(config, workdir: str, resume: bool = False, progress: bool = True,
          max_rounds: Optional[int] = None) -> Dict[str, Any]:
    """Trains MAMBA as configured, writing everything to ``workdir``.

    Args:
        config: a run config (see ``experiments/configs``); validated before any compilation.
        workdir: run folder. A folder that already holds checkpoints is only continued with
            ``resume=True``; it is never overwritten.
        resume: continue from the latest checkpoint in ``workdir``.
        progress: show a tqdm progress bar.
        max_rounds: stop after this many rounds in this call (for tests / time-boxed runs).
    Returns:
        (summary, run_state): summary dict (frames, updates, final eval returns, wall time,
        workdir), also written to ``<workdir>/summary.json``; the final ``RunState``.
    """
    setup = trainer.make_setup(config)  # validates: fails before compiling anything
    c = setup.config
    ckpt_dir = os.path.join(workdir, "checkpoints")
    os.makedirs(workdir, exist_ok=True)
    manager = checkpointing.make_manager(ckpt_dir, c.keep_checkpoints)
    has_ckpt = manager.latest_step() is not None
    if has_ckpt and not resume:
        raise FileExistsError(
            f"{workdir} already holds a run (checkpoints in {ckpt_dir}); pass --resume to continue "
            "it or choose another --workdir. Nothing was changed.")
    fingerprint = checkpointing.fingerprint_of(config, setup.replay_shards)
    config_path = os.path.join(workdir, "config.json")
    # multi-host: every process runs the same program; only process 0 writes logs and plots
    # (Orbax coordinates checkpoint writes across processes itself).
    is_main = jax.process_index() == 0
    if not has_ckpt and is_main:
        with open(config_path, "w") as f:
            f.write(config.to_json_best_effort(indent=2, sort_keys=True))

    log = logger_lib.RunLogger(workdir, json.loads(config.to_json_best_effort()),
                               c.wandb_mode if is_main else "disabled", c.wandb_project,
                               resume=resume, write=is_main)
    if log.wandb_error:
        print(log.wandb_error, file=sys.stderr)
    if is_main:
        auto = config.compute_dtype == "auto"
        how = f" (compute_dtype=auto on {jax.default_backend()})" if auto else ""
        print(f"compute dtype: {c.compute_dtype}{how}", file=sys.stderr)
    phases = trainer.compile_phases(setup)
    prefill_fn, collect_fn, evaluate_fn = (
        _CompileThenTrim(f) for f in (phases.prefill, phases.collect, phases.evaluate))
    updates = {}  # sequence length -> AOT-compiled update (one per wm-horizon bucket)

    def update_for(length: int):
        if length not in updates:
            updates[length] = phases.update_at(length).map(_CompileThenTrim)
        return updates[length]

    round_fn = lambda run: phases.round(run, collect_fn, update_for)
    eval_tasks = trainer.eval_tasks(setup)
    eval_key = jax.random.PRNGKey(c.eval_seed + 1)

    run = trainer.init_run_state(setup, c.seed)
    if has_ckpt:
        abstract = _checkpoint_state(run, c.checkpoint_replay)
        restored, meta = checkpointing.restore(manager, abstract, fingerprint)
        run = restored if c.checkpoint_replay else restored.replace(replay=run.replay)
        run = trainer.place(setup, run)
        print(f"resumed from {ckpt_dir} at update {_i(run.updates)} ({_i(run.frames)} frames)")
        if not c.checkpoint_replay:
            run = prefill_fn(run)  # the buffer was not saved: refill it with random data
    else:
        run = prefill_fn(run)
    memory.release_free_memory()  # the compiler's freed heap (see mamba_jax.memory)

    total_rounds = trainer.num_rounds_for(setup)
    eval_every = trainer.eval_every_rounds(setup)
    ckpt_every = trainer.checkpoint_every_rounds(setup)
    frames_target = setup.prefill * setup.length + total_rounds * c.num_envs * setup.length

    def save():
        state = _checkpoint_state(run, c.checkpoint_replay)
        meta = {"fingerprint": fingerprint, "frames": _i(run.frames), "updates": _i(run.updates),
                "rounds": _i(run.rounds), "time": time.time()}
        checkpointing.save(manager, _i(run.rounds), state, meta)

    def do_eval():
        t0 = time.time()
        ev = trainer.to_host(evaluate_fn(run.train, eval_tasks, eval_key))
        returns = ev["returns"]  # [E, K], or [S, E, K] with several seeds
        per_task = returns.sum(-1)
        rec = {"frames": _i(run.frames), "updates": _i(run.updates),
               "eval/return_std": float(per_task.std(-1).mean()), "eval/seconds": time.time() - t0}
        metrics = {"eval/return": per_task.mean(-1)}
        for k in range(c.K):
            metrics[f"eval/return_sub{k}"] = returns[..., k].mean(-1)
            # share of tasks where sub-episode k meets a positive reward (search succeeds)
            metrics[f"eval/found_sub{k}"] = behaviour.found_in(
                ev["rewards"], ev["transition_sub_idx"], k).mean(-1)  # [(S,) E] -> [(S,)]
        rec.update(_flatten_seeds(metrics))
        memory.release_free_memory()
        rec.update(memory.rss_mb())
        log.log(rec)
        if not is_main:
            return rec
        if c.num_seeds > 1:  # draw seed 0's agent
            ev = jax.tree.map(lambda x: x[0], ev)
        traj_dir = os.path.join(workdir, "trajectories")
        os.makedirs(traj_dir, exist_ok=True)
        _render(setup, ev, eval_tasks, os.path.join(traj_dir, f"frames_{_i(run.frames):09d}.png"),
                f"{c.env_name} at {_i(run.frames)} frames, return {rec['eval/return']:.1f}")
        logger_lib.plot_learning_curve(log.path, os.path.join(workdir, "learning_curve.png"),
                                       title=f"MAMBA on {c.env_name} (seed {c.seed})")
        logger_lib.plot_metrics([log.path], logger_lib.DIAGNOSTIC_KEYS,
                                os.path.join(workdir, "diagnostics.png"), strict=False,
                                logy=logger_lib.DIAGNOSTIC_LOGY,
                                title=f"{c.env_name} (seed {c.seed}): training diagnostics")
        return rec

    bar = None
    if progress and is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=frames_target, initial=_i(run.frames), unit="frame", dynamic_ncols=True,
                   desc=c.env_name)
    last_eval = None
    if has_ckpt and os.path.exists(log.path):  # resuming: the last evaluation already logged
        evals = [r for r in logger_lib.read_metrics(log.path) if "eval/return" in r]
        last_eval = evals[-1] if evals else None
    if _i(run.rounds) == 0 and eval_every:
        last_eval = do_eval()
    t_start, f_start = time.time(), _i(run.frames)
    rounds_here = 0
    stopped_by = None
    with _StopFlag() as stop:
        while _i(run.rounds) < total_rounds:
            t0 = time.time()
            run, metrics = round_fn(run)
            metrics = trainer.to_host(metrics)
            dt = time.time() - t0
            rounds_here += 1
            if rounds_here == 1:
                memory.release_free_memory()
            rec = {"frames": _i(run.frames), "updates": _i(run.updates),
                   "rounds": _i(run.rounds), "round_seconds": dt,
                   "fps": c.num_envs * setup.length / dt,
                   "nonfinite_total": int(np.sum(np.asarray(run.nonfinite_total)))}
            rec.update(memory.rss_mb())
            rec.update(_flatten_seeds(metrics))
            log.log(rec)
            streak = int(np.max(np.asarray(run.nonfinite_streak)))
            if streak >= c.max_nonfinite_streak:
                raise TrainingAborted(
                    f"{streak} updates in a row had non-finite losses or "
                    f"parameters (config.max_nonfinite_streak={c.max_nonfinite_streak}); "
                    f"last good checkpoint is kept in {ckpt_dir}. Last metrics: "
                    + ", ".join(f"{k}={float(np.mean(v)):.3g}" for k, v in metrics.items()
                                 if k.startswith("wm/")))
            if eval_every and _i(run.rounds) % eval_every == 0:
                last_eval = do_eval()
            if _i(run.rounds) % ckpt_every == 0:
                save()
            if bar is not None:
                bar.update(c.num_envs * setup.length)
                post = {"fps": f"{(_i(run.frames) - f_start) / (time.time() - t_start):.0f}"}
                if last_eval:
                    post["eval"] = f"{last_eval['eval/return']:.1f}"
                bar.set_postfix(post)
            if stop.requested:
                stopped_by = stop.requested
                break
            if max_rounds is not None and rounds_here >= max_rounds:
                break
    if bar is not None:
        bar.close()
    finished = _i(run.rounds) >= total_rounds
    if finished and eval_every and (last_eval is None or last_eval["frames"] != _i(run.frames)):
        last_eval = do_eval()
    if manager.latest_step() != _i(run.rounds):
        save()
    log.close()
    manager.close()
    wall = time.time() - t_start
    summary = {"frames": _i(run.frames), "updates": _i(run.updates), "rounds": _i(run.rounds),
               "finished": finished, "stopped_by": stopped_by, "wall_seconds": wall,
               "nonfinite_total": int(np.sum(np.asarray(run.nonfinite_total))),
               "peak_rss_mb": memory.rss_mb().get("peak_rss_mb"),
               "compute_dtype": c.compute_dtype, "final_eval": last_eval, "workdir": workdir}
    if is_main:
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    if stopped_by:
        print(f"stopped by {stopped_by}: checkpoint saved at round {_i(run.rounds)} in {ckpt_dir}; "
              "continue with --resume")
    return summary, run
