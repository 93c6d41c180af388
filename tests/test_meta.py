"""Meta-episode wrapper (spec sections 2-3): counters, boundaries, observation fields, batching."""
import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.core import Env, EnvState
from envs.meta import MetaEpisode, make_meta, random_action

TASKS = ("point_robot", "point_robot_wind", "escape_room", "rooms")


def to_np(tree):
    """Pytree of arrays -> numpy (typed PRNG keys -> their key data)."""
    def conv(x):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)
    return jax.tree_util.tree_map(conv, tree)


@partial(jax.jit, static_argnums=0)
def rollout(meta, key, actions, task=None):
    """Reset, then step through actions [T, A]; returns (reset state, states stacked over T)."""
    first = meta.reset(key, task)

    def body(ms, action):
        ms = meta.step(ms, action)
        return ms, ms

    _, traj = jax.lax.scan(body, first, actions)
    return first, traj


@dataclasses.dataclass(frozen=True)
class Faller(Env):
    """Test task: obs = [steps since reset]; the base episode terminates ('falls') at 3 steps."""

    name = "faller"
    obs_dim = 1
    action_dim = 1
    default_K = 2
    default_H = 5

    def sample_task(self, key):
        return {"id": jax.random.uniform(key)}

    def reset(self, key, task):
        return EnvState(obs=jnp.zeros((1,)), reward=jnp.zeros(()), done=jnp.zeros((), bool),
                        task=task, inner=(), key=key)

    def step(self, state, action):
        n = state.obs + 1.0
        return state.replace(obs=n, reward=n[0] + action[0], done=n[0] >= 3)


# -- construction ---------------------------------------------------------------------------
def test_make_meta_defaults_and_overrides():
    assert (make_meta("point_robot").K, make_meta("point_robot").H) == (3, 100)
    assert (make_meta("point_robot_wind").K, make_meta("point_robot_wind").H) == (3, 100)
    assert (make_meta("escape_room").K, make_meta("escape_room").H) == (2, 60)
    meta = make_meta("rooms", K=1, H=50, num_rooms=4)
    assert (meta.K, meta.H, meta.length, meta.env.num_rooms) == (1, 50, 50, 4)
    assert (meta.obs_dim, meta.action_dim, meta.discrete) == (2, 5, True)
    assert make_meta("rooms").K == 3  # paper's Figure 1, not the official config's K = 1
    assert envs.make_meta is make_meta
    assert hash(make_meta("escape_room")) == hash(make_meta("escape_room"))


@pytest.mark.parametrize("K, H", [(0, 10), (3, 0), (-1, 5), (1.5, 10), (2, 10.0), (True, 10),
                                  ("3", 100), (None, 100)])
def test_invalid_K_H(K, H):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        MetaEpisode(envs.make("point_robot"), K, H)


def test_bad_construction_inputs():
    with pytest.raises(ValueError, match="envs.Env"):
        MetaEpisode("point_robot", 3, 100)
    with pytest.raises(ValueError, match="valid names:.*escape_room"):
        make_meta("pointrobot")
    with pytest.raises(ValueError, match="no option"):
        make_meta("rooms", rooms=3)
    assert MetaEpisode(Faller(), np.int64(2), 5).K == 2  # numpy ints are accepted


# -- one full point-robot meta-episode --------------------------------------------------------
@pytest.fixture(scope="module")
def point_run():
    """Default point robot (3 x 100), goal (1, 0), action (1, 0) always, 5 steps past the end."""
    meta = make_meta("point_robot")
    task = {"goal": jnp.array([1.0, 0.0])}
    actions = jnp.tile(jnp.array([[1.0, 0.0]]), (meta.length + 5, 1))
    first, traj = rollout(meta, jax.random.key(0), actions, task)
    return meta, first, to_np(traj)


def test_reset_observation(point_run):
    meta, first, _ = point_run
    obs = first.obs
    np.testing.assert_array_equal(obs["state"], [0.0, 0.0])
    assert float(obs["reward"]) == 0.0 and float(obs["time_step"]) == 0.0
    assert bool(obs["is_first"]) and not bool(obs["is_terminal"])
    assert int(first.t) == 0 and int(first.sub_t) == 0 and int(first.sub_idx) == 0
    assert not bool(first.done) and not bool(first.sub_done)
    assert jax.tree_util.tree_leaves(first.starts)[0].shape[0] == meta.K


def test_time_step_and_flags(point_run):
    meta, _, traj = point_run
    L = meta.length
    t = np.arange(1, L + 1)
    np.testing.assert_array_equal(traj.t[:L], t)
    np.testing.assert_array_equal(traj.obs["time_step"][:L], t.astype(np.float32) / np.float32(L))
    assert traj.obs["time_step"][L - 1] == 1.0
    assert not traj.obs["is_first"].any()
    assert not traj.obs["is_terminal"].any()
    np.testing.assert_array_equal(np.nonzero(traj.sub_done[:L])[0] + 1, [100, 200, 300])
    np.testing.assert_array_equal(np.nonzero(traj.done[:L])[0] + 1, [300])
    np.testing.assert_array_equal(traj.sub_idx[:L], np.repeat([0, 1, 2], 100))
    np.testing.assert_array_equal(traj.sub_t[:L], t % 100)


def test_boundary_quirk_and_base_reset(point_run):
    meta, _, traj = point_run
    x = traj.obs["state"][:, 0]
    # Each sub-episode walks 0.1, 0.2, ..., 10.0 from the origin; the boundary step emits the
    # pre-reset position 10.0 and the next observation is 0.1 (the start (0, 0) is not emitted).
    for k in range(3):
        np.testing.assert_allclose(x[100 * k:100 * (k + 1)], 0.1 * np.arange(1, 101), rtol=1e-5)
    np.testing.assert_array_equal(traj.env_state.obs[[99, 199]], 0.0)  # base state was reset
    np.testing.assert_allclose(traj.env_state.obs[299], [10.0, 0.0], rtol=1e-5)  # not after the end
    # Same task and same start -> identical rewards in every sub-episode; the goal is passed.
    r = traj.reward[:300]
    np.testing.assert_array_equal(r[:100], r[100:200])
    np.testing.assert_array_equal(r[:100], r[200:300])
    assert r[:100].sum() > 2.5
    np.testing.assert_array_equal(traj.obs["reward"], traj.reward)
    np.testing.assert_array_equal(traj.env_state.task["goal"], np.tile([1.0, 0.0], (305, 1)))


def test_stepping_past_the_end_is_frozen(point_run):
    meta, _, traj = point_run
    L = meta.length
    past = jax.tree_util.tree_map(lambda x: x[L:], traj)
    assert past.done.all() and not past.sub_done.any()
    np.testing.assert_array_equal(past.t, L)
    np.testing.assert_array_equal(past.reward, 0.0)
    np.testing.assert_array_equal(past.obs["state"], np.tile(traj.obs["state"][L - 1], (5, 1)))
    np.testing.assert_array_equal(past.obs["time_step"], 1.0)
    np.testing.assert_array_equal(past.env_state.obs, np.tile(traj.env_state.obs[L - 1], (5, 1)))


# -- early termination (base done) ------------------------------------------------------------
def test_base_done_ends_sub_episode_and_meta_episode():
    meta = MetaEpisode(Faller(), K=2, H=5)
    first, traj = to_np(rollout(meta, jax.random.key(0), jnp.zeros((8, 1))))
    np.testing.assert_array_equal(traj.obs["state"][:, 0], [1, 2, 3, 1, 2, 3, 3, 3])
    np.testing.assert_array_equal(traj.obs["is_terminal"], [0, 0, 1, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(traj.sub_done, [0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(traj.done, [0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(traj.sub_idx, [0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(traj.obs["time_step"], np.array([1, 2, 3, 4, 5, 6, 6, 6]) / 10)
    np.testing.assert_array_equal(traj.reward, [1, 2, 3, 1, 2, 3, 0, 0])
    assert not traj.env_state.done[2]  # the reset base state is not done
    np.testing.assert_array_equal(traj.env_state.task["id"], first.env_state.task["id"])


def test_K1_H1_and_eager_step():
    meta = MetaEpisode(Faller(), 1, 1)
    ms = meta.step(meta.reset(jax.random.key(0)), jnp.zeros((1,)))
    assert bool(ms.done) and bool(ms.sub_done) and float(ms.obs["time_step"]) == 1.0


# -- batching, determinism, sub-episode resets for every task -------------------------------
@pytest.fixture(scope="module", params=TASKS)
def batch_run(request):
    """64 short meta-episodes (K=2, H=6, 13 steps) jitted+vmapped, and the same one at a time."""
    meta = make_meta(request.param, K=2, H=6)
    B, T = 64, meta.length + 1
    k_run, k_act = jax.random.split(jax.random.key(7))
    keys = jax.random.split(k_run, B)
    actions = random_action(meta, k_act, (B, T))
    batched = to_np(jax.jit(jax.vmap(partial(rollout, meta)))(keys, actions))
    singles = [to_np(rollout(meta, keys[i], actions[i])) for i in range(B)]
    return meta, keys, actions, batched, singles


def test_vmap_equals_loop(batch_run):
    meta, keys, actions, batched, singles = batch_run
    for i, single in enumerate(singles):
        jax.tree_util.tree_map(
            lambda b, s: np.testing.assert_allclose(np.asarray(b)[i], np.asarray(s), atol=1e-6,
                                                    err_msg=meta.env.name), batched, single)


def test_deterministic_from_key(batch_run):
    meta, keys, actions, batched, singles = batch_run
    again = to_np(rollout(meta, keys[0], actions[0]))
    jax.tree_util.tree_map(np.testing.assert_array_equal, again, singles[0])
    other = to_np(rollout(meta, keys[1], actions[0]))
    differs = [not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(other[1].env_state.task),
                                                       jax.tree_util.tree_leaves(singles[0][1].env_state.task))]
    assert any(differs)


def test_task_constant_and_base_reset_between_sub_episodes(batch_run):
    meta, keys, actions, (first, traj), _ = batch_run
    for leaf0, leaf in zip(jax.tree_util.tree_leaves(first.env_state.task),
                           jax.tree_util.tree_leaves(traj.env_state.task)):
        np.testing.assert_array_equal(np.asarray(leaf), np.repeat(np.asarray(leaf0)[:, None],
                                                                  leaf.shape[1], 1))
    # After the first boundary (step H) the base state is the pre-drawn start of sub-episode 2.
    H = meta.H
    assert np.asarray(traj.sub_done)[:, H - 1].all()
    np.testing.assert_array_equal(traj.env_state.obs[:, H - 1], first.starts["obs"][:, 1])
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a[:, H - 1], b[:, 1]),
                           traj.env_state.inner, first.starts["inner"])
    # Time keeps counting across the boundary; sub-episode index switches after it.
    np.testing.assert_array_equal(traj.t[0], np.minimum(np.arange(1, meta.length + 2), meta.length))
    np.testing.assert_array_equal(traj.sub_idx[0, H - 1:H + 1], [0, 1])
    if meta.env.name == "rooms":
        assert not np.asarray(traj.env_state.inner["reached"][:, H - 1]).any()
        np.testing.assert_array_equal(traj.env_state.inner["xy"][:, H - 1], 0)
    if meta.env.name == "escape_room":  # random starts differ between sub-episodes
        assert not np.allclose(first.starts["obs"][:, 0], first.starts["obs"][:, 1])


def test_reset_with_given_task_and_sampled_tasks_vary():
    meta = make_meta("escape_room")
    task = meta.env.sample_task(jax.random.key(5))
    ms = meta.reset(jax.random.key(0), task)
    np.testing.assert_array_equal(ms.env_state.task["door"], task["door"])
    doors = {float(meta.reset(jax.random.key(i)).env_state.task["door"]) for i in range(3)}
    assert len(doors) == 3


# -- bad inputs --------------------------------------------------------------------------------
def test_wrong_action_shape_raises_at_trace_time():
    for name in ("point_robot", "rooms"):
        meta = make_meta(name)
        ms = jax.eval_shape(meta.reset, jax.random.key(0))  # abstract: traced, never compiled
        jax.eval_shape(meta.step, ms, jnp.zeros((meta.action_dim,)))
        with pytest.raises(ValueError, match="action must have shape"):
            jax.eval_shape(meta.step, ms, jnp.zeros((meta.action_dim + 1,)))
        with pytest.raises(ValueError, match="action must have shape"):
            jax.eval_shape(meta.step, ms, jnp.zeros((2, meta.action_dim)))


def test_nan_action_through_wrapper():
    meta = make_meta("point_robot")
    ms = meta.step(meta.reset(jax.random.key(0)), jnp.array([jnp.nan, 1.0]))
    np.testing.assert_allclose(ms.obs["state"], [0.0, 0.1], atol=1e-7)
    assert np.isfinite(float(ms.reward))


def test_random_action():
    cont = make_meta("escape_room")
    a = random_action(cont, jax.random.key(0), (1000,))
    assert a.shape == (1000, 2) and a.dtype == jnp.float32
    assert float(a.min()) >= -1 and float(a.max()) <= 1 and float(a.std()) > 0.5
    assert random_action(cont, jax.random.key(0)).shape == (2,)
    disc = make_meta("rooms")
    a = np.asarray(random_action(disc, jax.random.key(0), (1000,)))
    assert a.shape == (1000, 5)
    np.testing.assert_array_equal(a.sum(-1), 1.0)
    assert set(np.unique(a)) == {0.0, 1.0} and (a.sum(0) > 150).all()
    assert random_action(envs.make("rooms"), jax.random.key(1)).shape == (5,)  # an Env works too
