"""The MAMBA training system: collection -> replay -> updates, data-parallel over a device mesh.

Phases (each one jitted function, no per-step host round trips):
    prefill(run)  : ``config.prefill`` random-policy meta-episodes into the replay buffer.
    round(run)    : ``num_envs`` meta-episodes with the agent's sampling policy, then
                    ``updates_per_round`` updates (``lax.scan``), each on a fresh batch of
                    ``batch_size`` whole meta-episodes. Non-finite updates are skipped and counted.
    evaluate(run) : deterministic policy (actor mode) on a fixed set of held-out tasks.

Data parallelism (pmap semantics with today's API): one ``Mesh`` over all devices with axis
``data``; the sampled batch and the environments are sharded along it with
``with_sharding_constraint``, parameters are replicated, and XLA inserts the gradient all-reduce.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import envs as envs_lib
from mamba_jax import collect as collect_lib
from mamba_jax import replay as replay_lib
from mamba_jax import schedule
from mamba_jax.agent import Agent, TrainState


@struct.dataclass
class RunState:
    """Everything a run needs to continue exactly where it stopped."""

    train: TrainState
    replay: replay_lib.ReplayState
    key: jax.Array  # raw uint32 PRNG key
    frames: jax.Array  # int32 [] real env frames collected (prefill included)
    updates: jax.Array  # int32 [] updates attempted
    rounds: jax.Array  # int32 [] collection rounds
    meta_episodes: jax.Array  # int32 [] meta-episodes collected
    nonfinite_streak: jax.Array  # int32 [] consecutive skipped updates
    nonfinite_total: jax.Array  # int32 [] skipped updates in total


@dataclasses.dataclass(frozen=True)
class Setup:
    """Static pieces derived from a config (hashable; closed over by the jitted phases)."""

    config: Any  # FrozenConfigDict
    meta: Any  # envs.MetaEpisode
    agent: Agent
    mesh: Mesh
    capacity: int
    updates_per_round: int

    @property
    def length(self) -> int:
        return self.meta.length


class ConfigError(ValueError):
    """A config value is invalid; the message names the field."""


def validate_config(config) -> None:
    """Checks a run config before anything is compiled. Raises ConfigError naming the field."""
    def bad(field, msg):
        raise ConfigError(f"config.{field}: {msg}")

    names = envs_lib.registered_names()
    if config.env_name not in names:
        bad("env_name", f"unknown environment {config.env_name!r}; valid: {', '.join(names)}")
    for f in ("K", "H", "num_envs", "batch_size", "eval_tasks", "keep_checkpoints",
              "checkpoint_every_updates", "max_nonfinite_streak", "num_seeds"):
        v = config[f]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            bad(f, f"must be an integer >= 1, got {v!r}")
    for f in ("prefill", "replay_capacity", "total_frames", "replay_capacity_steps",
              "eval_every_meta_episodes"):
        v = config[f]
        if not isinstance(v, (int, float)) or v < 0:
            bad(f, f"must be a number >= 0, got {v!r}")
    if not config.train_ratio > 0:
        bad("train_ratio", f"must be > 0, got {config.train_ratio!r}")
    n = schedule.updates_per_round(config.train_ratio, config.num_envs, config.H)
    if n < 1:
        bad("train_ratio", f"train_ratio * num_envs * H = {config.train_ratio * config.num_envs * config.H:g} "
            "must give at least one update per round")
    if config.sequence not in ("meta_episode", "window"):
        bad("sequence", f"must be 'meta_episode' (MAMBA) or 'window' (DreamerV3), got {config.sequence!r}")
    if config.sequence == "window" and not 1 <= config.window_length <= config.K * config.H:
        bad("window_length", f"must be in [1, K*H={config.K * config.H}], got {config.window_length!r}")
    if config.compute_dtype not in ("float32", "bfloat16"):
        bad("compute_dtype", f"must be 'float32' or 'bfloat16', got {config.compute_dtype!r}")
    if config.wandb_mode not in ("offline", "online", "disabled"):
        bad("wandb_mode", f"must be offline, online or disabled, got {config.wandb_mode!r}")
    if not 1 <= config.wm_horizon_initial:
        bad("wm_horizon_initial", f"must be >= 1, got {config.wm_horizon_initial!r}")
    ndev = jax.device_count()
    for f in ("num_envs", "batch_size"):
        if config[f] % ndev:
            bad(f, f"{config[f]} is not divisible by the {ndev} devices of the data-parallel mesh")


def make_setup(config) -> Setup:
    """Builds the environment, agent and mesh for a (validated) config."""
    import ml_collections

    validate_config(config)
    frozen = ml_collections.FrozenConfigDict(config)
    meta = envs_lib.MetaEpisode(envs_lib.make(config.env_name, **config.env_kwargs.to_dict()),
                                K=config.K, H=config.H)
    agent_cfg = config.agent.to_dict()
    agent_cfg["compute_dtype"] = config.compute_dtype
    agent = Agent(config=ml_collections.FrozenConfigDict(agent_cfg), obs_dim=meta.obs_dim,
                  action_dim=meta.action_dim, discrete=meta.discrete)
    capacity = config.replay_capacity or replay_lib.capacity_from_steps(
        config.replay_capacity_steps, meta.length)
    capacity = max(capacity, config.num_envs, config.prefill)
    mesh = make_mesh(jax.devices())
    return Setup(config=frozen, meta=meta, agent=agent, mesh=mesh, capacity=int(capacity),
                 updates_per_round=schedule.updates_per_round(config.train_ratio, config.num_envs,
                                                              config.H))


def make_mesh(devices) -> Mesh:
    """1-D data-parallel mesh (GSPMD 'auto' axis: XLA propagates the batch sharding)."""
    return jax.make_mesh((len(devices),), ("data",), devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,))


def item_spec(setup: Setup):
    return replay_lib.item_spec(setup.meta.obs_dim, setup.meta.action_dim)


def init_run_state(setup: Setup, seed: int) -> RunState:
    """Fresh parameters and an empty replay buffer; checks the buffer fits in memory.

    With ``config.num_seeds = S > 1`` every leaf gets a leading seed axis [S, ...]: seed
    ``seed + s`` is an independent agent (own parameters, replay, env streams and RNG).
    """
    S = setup.config.num_seeds
    replay_lib.check_fits(item_spec(setup), setup.length, setup.capacity * S)
    if S > 1:
        runs = [_init_one(setup, seed + s) for s in range(S)]
        return replicate(setup, jax.tree.map(lambda *xs: jnp.stack(xs), *runs))
    return replicate(setup, _init_one(setup, seed))


def replicate(setup: Setup, tree):
    """Places a state on the mesh, replicated: the phases then keep one sharding (and compile
    once) instead of seeing single-device inputs first and mesh-sharded outputs afterwards."""
    return jax.device_put(tree, NamedSharding(setup.mesh, P()))


def _init_one(setup: Setup, seed: int) -> RunState:
    key = jax.random.PRNGKey(seed)
    key, k_agent = jax.random.split(key)
    zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers: the phases donate the state
    return RunState(train=setup.agent.init(k_agent),
                    replay=replay_lib.init(item_spec(setup), setup.length, setup.capacity),
                    key=key, frames=zero(), updates=zero(), rounds=zero(), meta_episodes=zero(),
                    nonfinite_streak=zero(), nonfinite_total=zero())


def _shard_leading(setup: Setup, tree):
    """Constrains every leaf's leading axis to be split over the mesh's ``data`` axis."""
    sharding = NamedSharding(setup.mesh, P("data"))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def wm_horizon_for(setup: Setup, frames) -> jax.Array:
    c = setup.config
    f = schedule.logger_frames(frames, c.prefill * setup.length, c.legacy_double_count)
    return schedule.wm_horizon(f, setup.length, c.wm_horizon_initial, c.wm_horizon_reach_frames)


def window_batch(batch: Dict[str, jax.Array], key: jax.Array, length: int) -> Dict[str, jax.Array]:
    """DreamerV3-style training chunks (the vanilla-Dreamer baseline, spec 3.4 non-MAMBA mode).

    From each whole meta-episode [B, T, ...] take ``length`` consecutive steps from a uniformly
    random start, and mark the chunk's first step ``is_first`` so the RSSM restarts from its
    initial state there: the belief never sees more than ``length`` steps of history.
    (Unlike the official sampler this never writes into the stored data, spec 14.3.8.)
    """
    T = batch["is_first"].shape[1]
    starts = jax.random.randint(key, (batch["is_first"].shape[0],), 0, T - length + 1)
    cut = lambda x, s: jax.lax.dynamic_slice_in_dim(x, s, length, axis=0)
    out = {k: jax.vmap(cut)(v, starts) for k, v in batch.items()}
    out["is_first"] = out["is_first"].at[:, 0].set(True)
    return out


def guarded_update(setup: Setup, train: TrainState, batch, key, wm_h) -> Tuple[TrainState, Dict, jax.Array]:
    """One update; returns the old state unchanged when any metric or parameter is non-finite."""
    batch = _shard_leading(setup, batch)
    new, metrics = setup.agent.train_step(train, batch, key, wm_h)
    finite = _all_finite(metrics) & _all_finite(new.params)
    new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, train)
    return new, metrics, finite


def prefill(setup: Setup, run: RunState) -> RunState:
    """Adds ``config.prefill`` random-policy meta-episodes (fresh tasks) to the buffer."""
    n = setup.config.prefill
    if n == 0:
        return run
    key, k = jax.random.split(run.key)
    policy = collect_lib.random_policy(setup.meta)
    rollout, _ = collect_lib.collect(setup.meta, policy, None, k, n)
    return run.replace(replay=replay_lib.add(run.replay, rollout.data), key=key,
                       frames=run.frames + n * setup.length,
                       meta_episodes=run.meta_episodes + n)


def train_round(setup: Setup, run: RunState) -> Tuple[RunState, Dict[str, jax.Array]]:
    """Collects ``num_envs`` meta-episodes with the current policy, then runs the updates."""
    c = setup.config
    key, k_col, k_upd = jax.random.split(run.key, 3)
    agent = setup.agent
    policy = collect_lib.agent_policy(agent, run.train, mode=False)
    carry = _shard_leading(setup, agent.initial_carry(run.train, c.num_envs))
    rollout, _ = collect_lib.collect(setup.meta, policy, carry, k_col, c.num_envs)
    replay = replay_lib.add(run.replay, rollout.data)
    frames = run.frames + c.num_envs * setup.length
    wm_h = wm_horizon_for(setup, frames)

    def body(carry_, k):
        train, streak, total = carry_
        kb, kw, kt = jax.random.split(k, 3)
        batch = replay_lib.sample(replay, kb, c.batch_size)
        if c.sequence == "window":
            batch = window_batch(batch, kw, c.window_length)
        train, metrics, finite = guarded_update(setup, train, batch, kt, wm_h)
        streak = jnp.where(finite, 0, streak + 1)
        return (train, streak, total + (~finite).astype(jnp.int32)), (metrics, finite)

    keys = jax.random.split(k_upd, setup.updates_per_round)
    (train, streak, total), (metrics, finite) = jax.lax.scan(
        body, (run.train, run.nonfinite_streak, run.nonfinite_total), keys)
    metrics = jax.tree.map(lambda m: jnp.mean(m), metrics)  # mean over the round's updates
    sub_returns = collect_lib.sub_episode_returns(rollout, c.K)  # [N, K]
    metrics.update({
        "train/return": jnp.mean(jnp.sum(sub_returns, -1)),
        "train/updates_skipped": jnp.sum(~finite).astype(jnp.float32),
    })
    for k in range(c.K):
        metrics[f"train/return_sub{k}"] = jnp.mean(sub_returns[:, k])
    run = run.replace(train=train, replay=replay, key=key, frames=frames,
                      updates=run.updates + setup.updates_per_round, rounds=run.rounds + 1,
                      meta_episodes=run.meta_episodes + c.num_envs,
                      nonfinite_streak=streak, nonfinite_total=total)
    return run, metrics


def sample_tasks(setup: Setup, seed: int, num: int):
    """``num`` tasks (leaves [num, ...]) drawn from ``seed``: a fixed, reproducible task set."""
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    return jax.vmap(setup.meta.env.sample_task)(keys)


def eval_tasks(setup: Setup):
    """The fixed periodic-evaluation task set: ``eval_tasks`` tasks from ``config.eval_seed``."""
    return sample_tasks(setup, setup.config.eval_seed, setup.config.eval_tasks)


def evaluate(setup: Setup, train: TrainState, tasks, key) -> Dict[str, jax.Array]:
    """Deterministic policy on the given tasks.

    Returns: 'returns' [E, K] per-sub-episode returns, 'states' [E, T, obs_dim] observed states,
    'sub_idx' [E, T] the sub-episode each observed state belongs to (the state observed at t is
    where transition t-1 ended, so it takes that transition's index; the unobserved reset state
    of sub-episodes 2..K is not in 'states', spec 3.2).
    """
    n = jax.tree.leaves(tasks)[0].shape[0]
    policy = collect_lib.agent_policy(setup.agent, train, mode=True)
    carry = setup.agent.initial_carry(train, n)
    rollout, _ = collect_lib.collect(setup.meta, policy, carry, key, n, tasks=tasks)
    return {"returns": collect_lib.sub_episode_returns(rollout, setup.config.K),
            "states": rollout.data["state"], "sub_idx": collect_lib.observed_sub_idx(rollout)}


@dataclasses.dataclass(frozen=True)
class Phases:
    """The jitted phases for one setup."""

    prefill: Any
    round: Any
    evaluate: Any


@functools.lru_cache(maxsize=8)
def compile_phases(setup: Setup) -> Phases:
    """Jitted phases; with ``num_seeds > 1`` they are ``vmap``ped over the leading seed axis
    (evaluation uses the same tasks and key for every seed)."""
    pre = lambda run: prefill(setup, run)
    rnd = lambda run: train_round(setup, run)
    ev = lambda train, tasks, key: evaluate(setup, train, tasks, key)
    if setup.config.num_seeds > 1:
        pre, rnd, ev = jax.vmap(pre), jax.vmap(rnd), jax.vmap(ev, in_axes=(0, None, None))
    return Phases(prefill=jax.jit(pre, donate_argnums=0), round=jax.jit(rnd, donate_argnums=0),
                  evaluate=jax.jit(ev))


def num_rounds_for(setup: Setup) -> int:
    """Rounds needed to reach ``total_frames`` real frames after prefill."""
    c = setup.config
    remaining = max(0, c.total_frames - c.prefill * setup.length)
    return math.ceil(remaining / (c.num_envs * setup.length))


def eval_every_rounds(setup: Setup) -> int:
    c = setup.config
    return max(1, round(c.eval_every_meta_episodes / c.num_envs)) if c.eval_every_meta_episodes else 0


def checkpoint_every_rounds(setup: Setup) -> int:
    return max(1, math.ceil(setup.config.checkpoint_every_updates / setup.updates_per_round))


def to_host(tree) -> Any:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
