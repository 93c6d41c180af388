"""The MAMBA training system: collection -> replay -> updates, data-parallel over a device mesh.

Phases (jitted functions, no per-step host round trips):
    prefill(run)  : ``setup.prefill`` random-policy meta-episodes into the replay buffer.
    round(run)    : ``num_envs`` meta-episodes with the agent's sampling policy (``collect``), then
                    ``updates_per_round`` updates (``update``: a world-model and an actor-critic
                    executable, ``SplitUpdate``, dispatched n times),
                    each on a fresh batch of ``batch_size`` whole meta-episodes. Non-finite updates
                    are skipped and counted.
    evaluate(run) : deterministic policy (actor mode) on a fixed set of held-out tasks.

Data parallelism (pmap semantics with today's API): one ``Mesh`` over all devices with axis
``data``; the environments, the replay buffer's capacity axis (one block per device, see
``mamba_jax.replay``) and the sampled batch are sharded along it, parameters are replicated, and
XLA inserts the gradient all-reduce.
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
from mamba_jax import world_model as wm_lib
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
    capacity: int  # meta-episodes, a multiple of replay_shards
    updates_per_round: int
    prefill: int  # config.prefill rounded up to a multiple of replay_shards
    replay_shards: int  # = devices in the mesh: the replay's capacity axis is split over them

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
    try:
        envs_lib.check_options(config.env_name, dict(config.env_kwargs))
    except ValueError as e:
        bad("env_kwargs", f"{e} (after changing env_name, set env_kwargs for the new environment)")
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
    if config.compute_dtype not in ("auto", "float32", "bfloat16"):
        bad("compute_dtype", f"must be 'auto', 'float32' or 'bfloat16', got {config.compute_dtype!r}")
    if config.wandb_mode not in ("offline", "online", "disabled"):
        bad("wandb_mode", f"must be offline, online or disabled, got {config.wandb_mode!r}")
    q = wm_horizon_bucket(config)
    if not isinstance(q, int) or isinstance(q, bool) or q < 0:
        bad("wm_horizon_bucket", f"must be an integer >= 0, got {q!r}")
    if not 1 <= config.wm_horizon_initial:
        bad("wm_horizon_initial", f"must be >= 1, got {config.wm_horizon_initial!r}")
    from mamba_jax import config as agent_config_lib

    try:
        agent_config_lib.validate(config.agent)
    except agent_config_lib.FieldError as e:
        bad(f"agent.{e.field}", e.msg)
    ndev = jax.device_count()
    for f in ("num_envs", "batch_size"):
        if config[f] % ndev:
            bad(f, f"{config[f]} is not divisible by the {ndev} devices of the data-parallel mesh")


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 matmul instructions (x86 avx512_bf16 / amx_bf16, Arm bf16).

    False where the flags cannot be read (e.g. macOS).
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[-1].split())
                    return bool({"avx512_bf16", "amx_bf16", "bf16"} & flags)
    except OSError:
        pass
    return False


def resolve_compute_dtype(name: str, platform: str | None = None,
                          cpuinfo: str = "/proc/cpuinfo") -> str:
    """'auto' -> 'bfloat16' on GPU/TPU and on CPUs with bf16 matmul instructions, else 'float32'.

    bfloat16 here is mixed precision (bf16 matmul operands, float32 parameters, accumulation,
    normalisation statistics and losses; see ``nets.matmul``), as DreamerV3's JAX code trains by
    default. On this project's CPU it is ~1.2x faster per update than float32 with world-model
    losses within 1% over a whole quick-start run (README, Performance). A CPU without bf16
    instructions would emulate it, so 'auto' keeps float32 there. Explicit names pass through.
    """
    if name != "auto":
        return name
    platform = platform or jax.default_backend()
    if platform != "cpu" or cpu_has_bf16(cpuinfo):
        return "bfloat16"
    return "float32"


def make_setup(config) -> Setup:
    """Builds the environment, agent and mesh for a (validated) config."""
    import ml_collections

    validate_config(config)
    config = ml_collections.ConfigDict(config.to_dict())  # the caller's config stays as given
    config.compute_dtype = resolve_compute_dtype(config.compute_dtype)
    frozen = ml_collections.FrozenConfigDict(config)
    try:
        env = envs_lib.make(config.env_name, **config.env_kwargs.to_dict())
    except ValueError as e:  # an option value the environment refuses (its message names it)
        raise ConfigError(f"config.env_kwargs: {e}") from e
    meta = envs_lib.MetaEpisode(env, K=config.K, H=config.H)
    agent_cfg = config.agent.to_dict()
    agent_cfg["compute_dtype"] = config.compute_dtype
    agent = Agent(config=ml_collections.FrozenConfigDict(agent_cfg), obs_dim=meta.obs_dim,
                  action_dim=meta.action_dim, discrete=meta.discrete)
    mesh = make_mesh(jax.devices())
    shards = mesh.devices.size
    return Setup(config=frozen, meta=meta, agent=agent, mesh=mesh,
                 capacity=replay_capacity(config, meta.length, shards),
                 prefill=_round_up(config.prefill, shards), replay_shards=shards,
                 updates_per_round=schedule.updates_per_round(config.train_ratio, config.num_envs,
                                                              config.H))


def _round_up(n, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def replay_capacity(config, length: int, shards: int) -> int:
    """Replay capacity in meta-episodes for ``shards`` devices: ``replay_capacity`` (or
    ``replay_capacity_steps`` / length), at least one round and the prefill, rounded up to a
    multiple of ``shards``."""
    capacity = config.replay_capacity or replay_lib.capacity_from_steps(
        config.replay_capacity_steps, length)
    return _round_up(max(capacity, config.num_envs, config.prefill), shards)


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
    # one executable for every seed (the seed is traced): S seeds cost one compilation, not S
    # (~12 s each on an H200), and seed s gets the same numbers as a 1-seed run
    if S > 1:
        runs = [_init_jit(setup, jnp.int32(seed + s)) for s in range(S)]
        run = replicate(setup, jax.tree.map(lambda *xs: jnp.stack(xs), *runs))
    else:
        run = replicate(setup, _init_jit(setup, jnp.int32(seed)))
    return run.replace(replay=empty_replay(setup))


def replay_shardings(setup: Setup, replay):
    """Shardings for a replay state: data split along capacity over ``data``, counters replicated."""
    seed_axis = (None,) if setup.config.num_seeds > 1 else ()
    sharded = NamedSharding(setup.mesh, P(*seed_axis, "data"))
    replicated = NamedSharding(setup.mesh, P())
    return replay.replace(data=jax.tree.map(lambda _: sharded, replay.data),
                          insert=replicated, size=replicated)


def _make_empty_replay(setup: Setup, capacity: int) -> replay_lib.ReplayState:
    """An empty buffer of ``capacity`` meta-episodes, with a leading seed axis if num_seeds > 1."""
    S = setup.config.num_seeds
    r = replay_lib.init(item_spec(setup), setup.length, capacity)
    return r if S == 1 else jax.tree.map(lambda x: jnp.broadcast_to(x, (S,) + x.shape), r)


def abstract_replay(setup: Setup, capacity: int, sharding=None) -> replay_lib.ReplayState:
    """Shapes (``jax.ShapeDtypeStruct``) of ``_make_empty_replay``, all with ``sharding``."""
    shapes = jax.eval_shape(lambda: _make_empty_replay(setup, capacity))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def empty_replay(setup: Setup) -> replay_lib.ReplayState:
    """An empty buffer created directly in its sharded layout (each device allocates only its own
    block; nothing is built on one device first), with a leading seed axis if ``num_seeds > 1``."""
    make = lambda: _make_empty_replay(setup, setup.capacity)  # noqa: E731
    shardings = replay_shardings(setup, jax.eval_shape(make))
    return jax.jit(make, out_shardings=shardings)()


def run_shardings(setup: Setup, run: RunState):
    """Shardings for a run state (arrays or shapes): everything replicated except the replay
    buffer, whose capacity axis is split over the ``data`` axis (each device holds its block)."""
    replicated = NamedSharding(setup.mesh, P())
    out = jax.tree.map(lambda _: replicated, run.replace(replay=None))
    return out.replace(replay=None if run.replay is None else replay_shardings(setup, run.replay))


def place(setup: Setup, run: RunState) -> RunState:
    """Places a run state on the mesh with ``run_shardings``."""
    return jax.device_put(run, run_shardings(setup, run))


def replicate(setup: Setup, tree):
    """Places a state on the mesh, replicated: the phases then keep one sharding (and compile
    once) instead of seeing single-device inputs first and mesh-sharded outputs afterwards."""
    return jax.device_put(tree, NamedSharding(setup.mesh, P()))


def _init_one(setup: Setup, seed) -> RunState:
    """One agent's fresh state, without its replay buffer (``init_run_state`` adds that in its
    sharded layout). seed: int or int32 []."""
    key = jax.random.PRNGKey(seed)
    key, k_agent = jax.random.split(key)
    zero = lambda: jnp.zeros((), jnp.int32)  # distinct buffers: the phases donate the state
    return RunState(train=setup.agent.init(k_agent), replay=None, key=key, frames=zero(),
                    updates=zero(), rounds=zero(), meta_episodes=zero(),
                    nonfinite_streak=zero(), nonfinite_total=zero())


# compiled once per setup: the seed is an argument, not a constant baked into the program
_init_jit = jax.jit(_init_one, static_argnums=0)


def _shard_leading(setup: Setup, tree):
    """Constrains every leaf's leading axis to be split over the mesh's ``data`` axis."""
    sharding = NamedSharding(setup.mesh, P("data"))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


def _shard_replay(setup: Setup, replay: replay_lib.ReplayState) -> replay_lib.ReplayState:
    """Keeps the replay's capacity axis split over the mesh inside the jitted phases."""
    return replay.replace(data=_shard_leading(setup, replay.data))


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _keep_if_finite(new: TrainState, old: TrainState, metrics) -> Tuple[TrainState, jax.Array]:
    """``new`` if every metric and parameter of it is finite, else ``old``; and that flag."""
    finite = _all_finite(metrics) & _all_finite(new.params)
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old), finite


def wm_horizon_for(setup: Setup, frames) -> jax.Array:
    c = setup.config
    f = schedule.logger_frames(frames, setup.prefill * setup.length, c.legacy_double_count)
    return schedule.wm_horizon(f, setup.length, c.wm_horizon_initial, c.wm_horizon_reach_frames)


def wm_horizon_bucket(config) -> int:
    """``config.wm_horizon_bucket``; 0 (no buckets) for configs saved before the field existed."""
    return config.get("wm_horizon_bucket", 0)


def update_length(setup: Setup, wm_h) -> int:
    """Static sequence length an update at world-model horizon ``wm_h`` trains on.

    MAMBA's world-model loss only covers steps [0, wm_horizon) (spec 5.2), and the posterior at
    step t depends on steps <= t only, so an update may run on the first L >= wm_horizon steps of
    each meta-episode instead of all K*H: same losses, gradients and imagination starts (the
    sampling noise is drawn for all K*H steps, ``rssm.observe``), at a fraction of the cost while
    the schedule is short. L = wm_horizon rounded up to a multiple of ``wm_horizon_bucket``
    (each distinct L compiles the update once; 0 = always K*H). Host-side (wm_h: int or array);
    ``wm_h`` is only read (a device-to-host sync) when buckets are on.
    """
    T = setup.length
    q = wm_horizon_bucket(setup.config)
    if setup.config.sequence != "meta_episode" or not q:
        return T
    h = int(np.max(np.asarray(wm_h)))
    return int(min(T, max(1, math.ceil(h / q)) * q))


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


def guarded_update(setup: Setup, train: TrainState, batch, key, wm_h, noise_steps=None
                   ) -> Tuple[TrainState, Dict, jax.Array]:
    """One update; returns the old state unchanged when any metric or parameter is non-finite."""
    batch = _shard_leading(setup, batch)
    new, metrics = setup.agent.train_step(train, batch, key, wm_h, noise_steps)
    new, finite = _keep_if_finite(new, train, metrics)
    return new, metrics, finite


def prefill(setup: Setup, run: RunState) -> RunState:
    """Adds ``setup.prefill`` random-policy meta-episodes (fresh tasks) to the buffer."""
    n = setup.prefill
    if n == 0:
        return run
    key, k = jax.random.split(run.key)
    policy = collect_lib.random_policy(setup.meta)
    rollout, _ = collect_lib.collect(setup.meta, policy, None, k, n)
    data = _shard_leading(setup, rollout.data)  # [n, T, ...]: block i -> device i
    replay = _shard_replay(setup, replay_lib.add(run.replay, data, setup.replay_shards))
    return run.replace(replay=replay, key=key,
                       frames=run.frames + n * setup.length,
                       meta_episodes=run.meta_episodes + n)


def collect_round(setup: Setup, run: RunState):
    """First half of a round: ``num_envs`` meta-episodes with the current sampling policy into the
    replay buffer, counters advanced (``updates`` already counts this round's updates).

    Returns ``(run, update_keys [n, 2], wm_h [], metrics)`` with n = ``updates_per_round``.
    """
    c = setup.config
    key, k_col, k_upd = jax.random.split(run.key, 3)
    agent = setup.agent
    policy = collect_lib.agent_policy(agent, run.train, mode=False)
    carry = _shard_leading(setup, agent.initial_carry(run.train, c.num_envs))
    rollout, _ = collect_lib.collect(setup.meta, policy, carry, k_col, c.num_envs)
    replay = _shard_replay(setup, replay_lib.add(run.replay, rollout.data, setup.replay_shards))
    frames = run.frames + c.num_envs * setup.length
    wm_h = wm_horizon_for(setup, frames)
    sub_returns = collect_lib.sub_episode_returns(rollout, c.K)  # [N, K]
    metrics = {"train/return": jnp.mean(jnp.sum(sub_returns, -1))}
    for k in range(c.K):
        metrics[f"train/return_sub{k}"] = jnp.mean(sub_returns[:, k])
    run = run.replace(replay=replay, key=key, frames=frames,
                      updates=run.updates + setup.updates_per_round, rounds=run.rounds + 1,
                      meta_episodes=run.meta_episodes + c.num_envs)
    return run, jax.random.split(k_upd, setup.updates_per_round), wm_h, metrics


def _update_batch(setup: Setup, replay: replay_lib.ReplayState, key: jax.Array,
                  length: int | None):
    """The update's batch ([B, T, ...], sharded over the mesh), noise_steps and training key."""
    c = setup.config
    kb, kw, kt = jax.random.split(key, 3)
    batch = replay_lib.sample(replay, kb, c.batch_size, setup.replay_shards)
    noise_steps = None
    if c.sequence == "window":
        batch = window_batch(batch, kw, c.window_length)
    elif length is not None and length < setup.length:
        batch = {k: v[:, :length] for k, v in batch.items()}
        noise_steps = setup.length
    return _shard_leading(setup, batch), noise_steps, kt


def update_wm_half(setup: Setup, train: TrainState, replay: replay_lib.ReplayState,
                   key: jax.Array, wm_h, length: int | None = None) -> Dict[str, Any]:
    """First half of ``update_step``: samples the batch and takes the world-model step
    (``Agent.wm_update``'s result: updated world model, posteriors [B, T, ...], metrics)."""
    batch, noise_steps, kt = _update_batch(setup, replay, key, length)
    return setup.agent.wm_update(train, batch, kt, wm_h, noise_steps)


def update_ac_half(setup: Setup, carry, wm_out: Dict[str, Any], key: jax.Array):
    """Second half of ``update_step``: the actor-critic step from ``wm_out`` (same ``key``), then
    the non-finite guard over the whole update (world model included). Returns like
    ``update_step``."""
    train, streak, total = carry
    kt = jax.random.split(key, 3)[2]
    new, metrics = setup.agent.ac_update(train, wm_out, kt)
    train, finite = _keep_if_finite(new, train, metrics)
    streak = jnp.where(finite, 0, streak + 1)
    return (train, streak, total + (~finite).astype(jnp.int32)), (metrics, finite)


def update_step(setup: Setup, carry, replay: replay_lib.ReplayState, key: jax.Array, wm_h,
                length: int | None = None):
    """One update on a fresh batch of ``batch_size`` whole meta-episodes from ``replay``.

    ``length`` (static, from ``update_length``): train on the first ``length`` steps of each
    sampled meta-episode (requires wm_h <= length); None = all of them.

    ``carry`` = (train state, non-finite streak, non-finite total); a non-finite update is skipped
    (state unchanged) and counted. Returns ``(carry, (metrics, finite))``. The same values as
    ``guarded_update`` on the sampled batch; ``SplitUpdate`` runs its two halves as two programs.
    """
    return update_ac_half(setup, carry, update_wm_half(setup, carry[0], replay, key, wm_h, length),
                          key)


@dataclasses.dataclass(frozen=True)
class SplitUpdate:
    """``update_step`` as two executables: ``wm(train, replay, key, wm_h) -> wm_out`` and
    ``ac(carry, wm_out, key) -> (carry, (metrics, finite))`` (donates carry).

    Same results as one program. Compiling the point-robot update as one program peaked at +1.34 GB
    of compiler memory (bfloat16), its world-model half alone at +0.93 GB, which is what a first
    run's peak RSS is made of (README, Performance, session 8).
    """
    wm: Any
    ac: Any

    def __call__(self, carry, replay, key, wm_h):
        return self.ac(carry, self.wm(carry[0], replay, key, wm_h), key)

    def map(self, f) -> "SplitUpdate":
        """The same update with ``f`` applied to both executables (e.g. AOT-compiling wrappers)."""
        return SplitUpdate(f(self.wm), f(self.ac))

    def compile(self, carry, replay, key, wm_h) -> "SplitUpdate":
        """Both halves compiled ahead of time for these arguments (the actor-critic half for the
        world-model half's output shapes and shardings; nothing is run)."""
        wm = self.wm.lower(carry[0], replay, key, wm_h).compile()
        return SplitUpdate(wm, self.ac.lower(carry, wm.out_info, key).compile())


def _finish_round(run: RunState, carry, metrics, finite, col_metrics):
    """Round metrics: update metrics averaged over the round's updates (leading axis)."""
    train, streak, total = carry
    out = wm_lib.conditional_reward_means(jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics))
    out.update(col_metrics)
    out["train/updates_skipped"] = jnp.sum(~finite, axis=0).astype(jnp.float32)
    return run.replace(train=train, nonfinite_streak=streak, nonfinite_total=total), out


def train_round(setup: Setup, run: RunState) -> Tuple[RunState, Dict[str, jax.Array]]:
    """A whole round as ONE program: ``collect_round`` then ``lax.scan`` over ``update_step``.

    Same keys and results as ``Phases.round`` (which runs the same two halves as two executables:
    the compiler's peak memory drops from ~2.0 to ~1.6 GB on the point-robot config); kept as the
    reference the split version is tested against.
    """
    run, keys, wm_h, col_metrics = collect_round(setup, run)
    carry = (run.train, run.nonfinite_streak, run.nonfinite_total)
    carry, (metrics, finite) = jax.lax.scan(
        lambda cr, k: update_step(setup, cr, run.replay, k, wm_h), carry, keys)
    return _finish_round(run, carry, metrics, finite, col_metrics)


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
    of sub-episodes 2..K is not in 'states', spec 3.2), and per transition t: 'rewards' [E, T]
    its reward and 'transition_sub_idx' [E, T] its sub-episode (``behaviour``'s inputs).
    """
    n = jax.tree.leaves(tasks)[0].shape[0]
    policy = collect_lib.agent_policy(setup.agent, train, mode=True)
    carry = setup.agent.initial_carry(train, n)
    rollout, _ = collect_lib.collect(setup.meta, policy, carry, key, n, tasks=tasks)
    return {"returns": collect_lib.sub_episode_returns(rollout, setup.config.K),
            "states": rollout.data["state"], "sub_idx": collect_lib.observed_sub_idx(rollout),
            "rewards": rollout.rewards, "transition_sub_idx": rollout.sub_idx}


@dataclasses.dataclass(frozen=True)
class Phases:
    """The jitted phases for one setup.

    ``round(run) -> (run, metrics)`` runs ``collect`` (one executable) and then the update
    ``updates_per_round`` times (``SplitUpdate``: world-model and actor-critic executables,
    dispatched asynchronously from the host: no host round trip between updates). The update runs
    on the first ``update_length`` steps of the sampled meta-episodes: ``update_at(length)`` is
    the update for one length (compiled on first use), ``update`` the one for whole
    meta-episodes. Compiling collection and update separately instead of one fused round program
    lowers the compiler's peak host memory by ~0.4 GB and the executable's resident size by
    ~0.3 GB; compiling the update as two halves lowers it by another ~0.4 GB (README,
    Performance; ``experiments/bench_memory.py``).
    """

    prefill: Any
    collect: Any
    update: Any
    evaluate: Any
    updates_per_round: int
    update_at: Any  # length -> jitted update on the first ``length`` steps
    length_for: Any  # wm_h (device array) -> length (host int; see ``update_length``)

    def round(self, run: RunState, collect_fn=None, update_for=None):
        """One round; ``collect_fn`` replaces the jitted collection and ``update_for(length)``
        returns the update to use (e.g. AOT-compiled wrappers of the jitted halves)."""
        collect_fn, update_for = collect_fn or self.collect, update_for or self.update_at
        run, keys, wm_h, col_metrics = collect_fn(run)
        update_fn = update_for(self.length_for(wm_h))
        carry = (run.train, run.nonfinite_streak, run.nonfinite_total)
        # donated to the first update (the carry's buffers must not be used from ``run`` again)
        run = run.replace(train=None, nonfinite_streak=None, nonfinite_total=None)
        ms, fs = [], []
        for i in range(self.updates_per_round):
            carry, (m, f) = update_fn(carry, run.replay, _take_key(keys, i), wm_h)
            ms.append(m)
            fs.append(f)
        metrics, finite = _stack_tree(ms), _stack_tree(fs)
        return _finish_round_jit(run, carry, metrics, finite, col_metrics)


@jax.jit
def _stack_tree(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


_finish_round_jit = jax.jit(_finish_round, donate_argnums=(0, 1))


def _take_key(keys, i: int):
    """Key ``i`` of ``[n, 2]`` (or ``[S, n, 2]`` with a seed axis) raw keys."""
    return keys[..., i, :]


@functools.lru_cache(maxsize=8)
def compile_phases(setup: Setup) -> Phases:
    """Jitted phases; with ``num_seeds > 1`` they are ``vmap``ped over the leading seed axis
    (evaluation uses the same tasks and key for every seed)."""
    seeds = setup.config.num_seeds > 1
    pre = lambda run: prefill(setup, run)
    col = lambda run: collect_round(setup, run)
    ev = lambda train, tasks, key: evaluate(setup, train, tasks, key)
    if seeds:
        pre, col = jax.vmap(pre), jax.vmap(col)
        ev = jax.vmap(ev, in_axes=(0, None, None))

    @functools.lru_cache(maxsize=None)
    def update_at(length: int) -> SplitUpdate:
        wm = lambda train, replay, key, wm_h: update_wm_half(setup, train, replay, key, wm_h,
                                                             length)
        ac = lambda carry, wm_out, key: update_ac_half(setup, carry, wm_out, key)
        if seeds:
            wm, ac = jax.vmap(wm), jax.vmap(ac)
        # the world-model half must not donate the train state: the guard may restore it
        return SplitUpdate(wm=jax.jit(wm), ac=jax.jit(ac, donate_argnums=0))

    return Phases(prefill=jax.jit(pre, donate_argnums=0), collect=jax.jit(col, donate_argnums=0),
                  update=update_at(setup.length), evaluate=jax.jit(ev),
                  updates_per_round=setup.updates_per_round, update_at=update_at,
                  length_for=functools.partial(update_length, setup))


def num_rounds_for(setup: Setup) -> int:
    """Rounds needed to reach ``total_frames`` real frames after prefill."""
    c = setup.config
    remaining = max(0, c.total_frames - setup.prefill * setup.length)
    return math.ceil(remaining / (c.num_envs * setup.length))


def eval_every_rounds(setup: Setup) -> int:
    c = setup.config
    return max(1, round(c.eval_every_meta_episodes / c.num_envs)) if c.eval_every_meta_episodes else 0


def checkpoint_every_rounds(setup: Setup) -> int:
    return max(1, math.ceil(setup.config.checkpoint_every_updates / setup.updates_per_round))


def to_host(tree) -> Any:
    return jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
