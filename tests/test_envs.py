"""Pure-JAX tasks (spec 10.1-10.4): hand-computed dynamics and rewards, registry, rendering."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.escape_room import R_IN, R_OUT, EscapeRoom
from envs.point_robot import PointRobot, PointRobotWind
from envs.rooms import Rooms

NOOP, UP, RIGHT, DOWN, LEFT = range(5)


def at(env, pos, task, **inner):
    """A base state of a continuous env placed at ``pos``."""
    state = env.reset(jax.random.key(0), task)
    return state.replace(obs=jnp.asarray(pos, jnp.float32))


# -- registry -------------------------------------------------------------------------------
def test_registry_names_and_errors():
    names = envs.registered_names()
    for name in ("point_robot", "point_robot_wind", "escape_room", "rooms"):
        assert name in names
    with pytest.raises(ValueError, match="valid names:.*point_robot"):
        envs.make("no_such_env")
    with pytest.raises(ValueError, match="no option"):
        envs.make("point_robot", goal_radiuss=0.3)
    assert envs.make("point_robot", goal_radius=0.3).goal_radius == 0.3
    assert envs.make("rooms", num_rooms=2).width == 9
    with pytest.raises(ValueError):
        envs.make("point_robot", goal_radius=-1.0)
    with pytest.raises(ValueError):
        envs.make("rooms", num_rooms=0)
    with pytest.raises(ValueError):
        envs.make("point_robot_wind", wind_force=-0.1)
    # Frozen dataclasses: hashable, usable as static arguments.
    assert hash(PointRobot()) == hash(PointRobot())


def test_wrong_action_shape_raises_at_trace_time():
    for env in (PointRobot(), PointRobotWind(), EscapeRoom(), Rooms()):
        # Abstract evaluation: the check runs while tracing, nothing is compiled.
        state = jax.eval_shape(lambda k: env.reset(k, env.sample_task(k)), jax.random.key(0))
        jax.eval_shape(env.step, state, jnp.zeros((env.action_dim,)))
        with pytest.raises(ValueError, match="action must have shape"):
            jax.eval_shape(env.step, state, jnp.zeros((env.action_dim + 1,)))
        with pytest.raises(ValueError, match="Use jax.vmap"):
            jax.eval_shape(env.step, state, jnp.zeros((4, env.action_dim)))
    with pytest.raises(ValueError, match="action must have shape"):  # and eagerly
        PointRobot().step(PointRobot().reset(jax.random.key(0), GOAL_X), jnp.zeros(3))


# -- point robot ----------------------------------------------------------------------------
GOAL_X = {"goal": jnp.array([1.0, 0.0], jnp.float32)}


def test_point_robot_tasks_on_upper_half_circle():
    env = PointRobot()
    goals = jax.jit(jax.vmap(env.sample_task))(jax.random.split(jax.random.key(0), 2000))["goal"]
    np.testing.assert_allclose(np.linalg.norm(goals, axis=-1), 1.0, atol=1e-6)
    assert goals[:, 1].min() >= 0.0
    assert goals[:, 0].min() < -0.95 and goals[:, 0].max() > 0.95  # covers the whole half circle


def test_point_robot_dynamics():
    env = PointRobot()
    state = env.reset(jax.random.key(0), GOAL_X)
    np.testing.assert_array_equal(state.obs, [0.0, 0.0])
    state = env.step(state, jnp.array([0.5, -0.3]))
    np.testing.assert_allclose(state.obs, [0.05, -0.03], atol=1e-7)
    state = env.step(state, jnp.array([3.0, -2.0]))  # clipped to [-1, 1]
    np.testing.assert_allclose(state.obs, [0.15, -0.13], atol=1e-7)
    assert float(state.reward) == 0.0 and not bool(state.done)


@pytest.mark.parametrize("start, action, expected", [
    ((0.71, 0.0), (1.0, 0.0), 1.0 - 0.19),   # d = 0.19 after the move (0.29 before): 1 - d
    ((0.69, 0.0), (1.0, 0.0), 0.0),          # d = 0.21 after the move: 0
    ((0.95, 0.0), (0.5, 0.0), 1.0),          # exactly on the goal
    ((0.9, 0.1), (0.0, 0.0), 1.0 - math.sqrt(0.02)),
    ((1.1, 0.0), (1.0, 0.0), 0.0),           # d = 0.2 before but 0.2 + 0.1 after the move
])
def test_point_robot_reward(start, action, expected):
    env = PointRobot()
    state = env.step(at(env, start, GOAL_X), jnp.array(action))
    np.testing.assert_allclose(float(state.reward), expected, atol=1e-6)


def test_point_robot_goal_radius_override():
    env = PointRobot(goal_radius=0.3)
    state = env.step(at(env, (0.75, 0.0), GOAL_X), jnp.array([0.0, 0.0]))  # d = 0.25 <= 0.3
    np.testing.assert_allclose(float(state.reward), 0.75, atol=1e-6)


def test_point_robot_reward_offset_shifts_the_disc_only():
    env = PointRobot(goal_radius=10.0, reward_offset=9.0)
    state = env.step(at(env, (-2.0, 0.0), GOAL_X), jnp.array([0.0, 0.0]))  # d = 3
    np.testing.assert_allclose(float(state.reward), 7.0, atol=1e-6)  # 1 - 3 + 9
    outside = PointRobot(goal_radius=0.2, reward_offset=9.0)
    state = outside.step(at(outside, (0.0, 0.0), GOAL_X), jnp.array([0.0, 0.0]))  # d = 1 > 0.2
    assert float(state.reward) == 0.0
    with pytest.raises(ValueError, match="reward_offset"):
        PointRobot(reward_offset=float("nan"))


def test_point_robot_nan_and_inf_actions():
    env = PointRobot()
    state = env.step(at(env, (0.2, 0.3), GOAL_X), jnp.array([jnp.nan, 0.5]))
    np.testing.assert_allclose(state.obs, [0.2, 0.35], atol=1e-7)  # NaN component -> 0
    state = env.step(state, jnp.array([jnp.inf, -jnp.inf]))
    np.testing.assert_allclose(state.obs, [0.3, 0.25], atol=1e-7)  # +-inf -> +-1
    assert np.isfinite(np.asarray(state.reward))


@pytest.fixture(scope="module")
def wind_displacements():
    """Displacement of one wind step from 0 for actions 0 and (1, 1), 20000 keys each."""
    env = PointRobotWind()

    @jax.jit
    def one(key, action):
        state = env.reset(key, GOAL_X)
        s1 = env.step(state, action)
        s2 = env.step(s1, action)
        return s1.obs, s2.obs - s1.obs

    keys = jax.random.split(jax.random.key(3), 20000)
    batched = jax.jit(jax.vmap(one, in_axes=(0, None)))
    return {
        "zero": batched(keys, jnp.zeros(2)),
        "one": batched(keys, jnp.ones(2)),
        "single": one(keys[0], jnp.zeros(2)),
        "single_again": one(keys[0], jnp.zeros(2)),
    }


def test_wind_noise_scale(wind_displacements):
    first, second = (np.asarray(x) for x in wind_displacements["zero"])
    n = first.shape[0]
    # Zero action: displacement = 0.1 * clip(N(0, 0.3^2)) -> std 0.03 (clip at 3.3 sigma ~ no effect)
    assert np.all(np.abs(first.mean(0)) < 5 * 0.03 / math.sqrt(n))
    np.testing.assert_allclose(first.std(0), 0.03, rtol=0.03)
    np.testing.assert_allclose(second.std(0), 0.03, rtol=0.03)
    # Independent components and independent consecutive steps.
    assert abs(np.corrcoef(first[:, 0], first[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(first[:, 0], second[:, 0])[0, 1]) < 0.05
    assert np.abs(first).max() <= 0.1 + 1e-6


def test_wind_noise_added_before_clip(wind_displacements):
    first, _ = (np.asarray(x) for x in wind_displacements["one"])
    # a = 1: 0.1 * E[clip(1 + 0.3 z)] = 0.1 * (1 - 0.3 * E[max(0, -z)]) = 0.1 * (1 - 0.3/sqrt(2 pi)).
    expected = 0.1 * (1.0 - 0.3 / math.sqrt(2 * math.pi))
    np.testing.assert_allclose(first.mean(0), expected, atol=5e-4)
    assert first.max() <= 0.1 + 1e-6


def test_wind_is_deterministic_given_key(wind_displacements):
    a, b = wind_displacements["single"], wind_displacements["single_again"]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], a[1])  # the second step's noise differs from the first


def test_wind_zero_force_equals_point_robot():
    calm, plain = PointRobotWind(wind_force=0.0), PointRobot()
    a = calm.step(calm.reset(jax.random.key(1), GOAL_X), jnp.array([0.3, jnp.nan]))
    b = plain.step(plain.reset(jax.random.key(1), GOAL_X), jnp.array([0.3, jnp.nan]))
    np.testing.assert_allclose(a.obs, b.obs, atol=1e-7)


# -- escape room ----------------------------------------------------------------------------
def door(phi):
    phi = jnp.float32(phi)
    return {"door": phi, "door_dir": jnp.stack([jnp.cos(phi), jnp.sin(phi)])}


def polar(r, angle):
    return (r * math.cos(angle), r * math.sin(angle))


def test_escape_room_task_and_start_distribution():
    env = EscapeRoom()
    keys = jax.random.split(jax.random.key(0), 4000)
    tasks = jax.jit(jax.vmap(env.sample_task))(keys)
    assert tasks["door"].min() >= 0 and tasks["door"].max() <= math.pi
    np.testing.assert_allclose(tasks["door_dir"], np.stack([np.cos(tasks["door"]),
                                                            np.sin(tasks["door"])], -1), atol=1e-6)
    starts = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, door(1.0)).obs
    radius = np.linalg.norm(starts, axis=-1)
    assert radius.max() < 1.0
    # p = u (sin a, cos a) with u ~ U[0, 1): the radius is uniform, all four quadrants are used.
    np.testing.assert_allclose(np.mean(radius), 0.5, atol=0.02)
    assert (starts[:, 1] < -0.5).any() and (starts[:, 0] < -0.5).any()


@pytest.mark.parametrize("phi, start, action, expected, reward", [
    # Radial exit through the door (door at 90 deg): accepted, reward outside.
    (math.pi / 2, (0.0, 0.95), (0.0, 1.0), (0.0, 1.05), 1.0),
    # Radial exit through the wall: teleported to 0.99 * p'/|p'|.
    (math.pi / 2, (0.95, 0.0), (1.0, 0.0), (0.99, 0.0), 0.0),
    # Re-entering from outside through the wall also teleports just inside.
    (math.pi / 2, (1.05, 0.0), (-1.0, 0.0), (0.99, 0.0), 0.0),
    # Re-entering through the door is accepted.
    (math.pi / 2, (0.0, 1.05), (0.0, -1.0), (0.0, 0.95), 0.0),
    # Moves that do not touch the wall are accepted, inside and outside.
    (math.pi / 2, (0.0, 0.0), (1.0, -1.0), (0.1, -0.1), 0.0),
    (0.0, (0.0, 1.5), (1.0, 0.0), (0.1, 1.5), 1.0),
    # Landing inside the wall annulus counts as touching it.
    (0.0, (0.0, 0.9), (0.0, 0.9995), (0.0, 0.99), 0.0),
    # Starting inside the annulus: the touch point is p itself.
    (0.0, (0.0, 0.9995), (0.0, -1.0), (0.0, 0.99), 0.0),
    (math.pi / 2, (0.0, 0.9995), (0.0, 1.0), (0.0, 1.0995), 1.0),
])
def test_escape_room_cases(phi, start, action, expected, reward):
    env = EscapeRoom()
    state = env.step(at(env, start, door(phi)), jnp.array(action))
    np.testing.assert_allclose(state.obs, expected, atol=1e-6)
    assert float(state.reward) == reward


@pytest.mark.parametrize("offset, accepted", [(0.15, True), (-0.15, True), (0.25, False),
                                              (-0.25, False)])
def test_escape_room_door_width(offset, accepted):
    env, phi = EscapeRoom(), 1.0  # half width pi/16 = 0.196
    angle = phi + offset
    state = env.step(at(env, polar(0.95, angle), door(phi)), jnp.array(polar(1.0, angle)))
    expected = polar(1.05, angle) if accepted else polar(0.99, angle)
    np.testing.assert_allclose(state.obs, expected, atol=1e-6)


def test_escape_room_first_touch_point_decides():
    # Oblique move from just inside the door edge: the proposal's direction is in the door but the
    # segment meets the wall outside the door first -> blocked.
    env, phi = EscapeRoom(), math.pi / 2
    start = polar(0.99, phi - 0.24)
    action = (-1.0, 0.6)  # rotates towards the door centre while moving out
    prop = np.array(start) + 0.1 * np.array(action)
    assert abs(math.atan2(prop[1], prop[0]) - phi) < math.pi / 16 and np.linalg.norm(prop) > 1
    state = env.step(at(env, start, door(phi)), jnp.array(action))
    np.testing.assert_allclose(state.obs, 0.99 * prop / np.linalg.norm(prop), atol=1e-6)


def brute_force_touch(p, q, n=20001):
    """First point of the segment p -> q inside the annulus, by dense sampling (float64)."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = p[None] + t * (q - p)[None]
    r = np.linalg.norm(pts, axis=-1)
    inside = (r >= R_IN) & (r <= R_OUT)
    if not inside.any():
        return False, None
    return True, pts[np.argmax(inside)]


def test_escape_room_touch_point_matches_brute_force():
    env = EscapeRoom()
    rng = np.random.default_rng(0)
    radius = rng.uniform(0.9, 1.1, 200)
    angle = rng.uniform(-math.pi, math.pi, 200)
    p = np.stack([radius * np.cos(angle), radius * np.sin(angle)], -1)
    q = p + 0.1 * rng.uniform(-1, 1, (200, 2))
    hit, point = jax.jit(jax.vmap(env.wall_hit))(jnp.asarray(p, jnp.float32),
                                                   jnp.asarray(q, jnp.float32))
    n_hit = 0
    for i in range(200):
        ref_hit, ref_point = brute_force_touch(p[i], q[i])
        assert bool(hit[i]) == ref_hit, (p[i], q[i])
        if ref_hit:
            n_hit += 1
            np.testing.assert_allclose(point[i], ref_point, atol=2e-5)
    assert n_hit > 50


def test_escape_room_door_test_matches_atan2_window():
    env = EscapeRoom()
    rng = np.random.default_rng(1)
    phis = rng.uniform(0, math.pi, 4000)
    phis[:1000] = rng.uniform(math.pi - 0.2, math.pi, 1000)  # doors straddling angle pi
    beta = rng.uniform(-math.pi, math.pi, 4000)
    pts = np.stack([np.cos(beta), np.sin(beta)], -1)
    got = jax.vmap(env.in_door)(jnp.asarray(pts, jnp.float32), jax.vmap(door)(phis))
    beta_ref = np.arctan2(pts[:, 1], pts[:, 0])
    ref = (phis - math.pi / 16 <= beta_ref) & (beta_ref <= phis + math.pi / 16)
    clear = np.abs(np.abs(beta_ref - phis) - math.pi / 16) > 1e-4
    np.testing.assert_array_equal(np.asarray(got)[clear], ref[clear])
    assert ref.sum() > 100


def test_escape_room_nan_action():
    env = EscapeRoom()
    state = env.step(at(env, (0.5, 0.0), door(0.0)), jnp.array([jnp.nan, jnp.nan]))
    np.testing.assert_allclose(state.obs, [0.5, 0.0])


# -- rooms ----------------------------------------------------------------------------------
def one_hot(index):
    return jax.nn.one_hot(index, 5)


@pytest.fixture(scope="module")
def rooms_step():
    env = Rooms()
    return env, jax.jit(env.step)


def rooms_at(env, xy, task, reached=None):
    state = env.reset(jax.random.key(0), task)
    xy = jnp.asarray(xy, jnp.int32)
    inner = {"xy": xy, "reached": state.inner["reached"] if reached is None
             else jnp.asarray(reached)}
    return state.replace(obs=env.observe(xy), inner=inner)


TASK3 = {"goals": jnp.array([[2, 1], [6, -1], [14, 1]], jnp.int32)}


def test_rooms_observation_mapping():
    env = Rooms()
    assert env.width == 15
    state = env.reset(jax.random.key(0), TASK3)
    np.testing.assert_allclose(state.obs, [2 * 2 / 15 - 1, 1 / 3], atol=1e-7)
    cells = np.array([[x, y] for x in range(15) for y in (-1, 0, 1)])
    obs = env.observe(jnp.asarray(cells))
    np.testing.assert_allclose(np.unique(np.asarray(obs[:, 1]).round(6)), [-1 / 3, 1 / 3, 1.0],
                               atol=1e-6)
    np.testing.assert_array_equal(env.positions(obs), cells)


@pytest.mark.parametrize("xy, action, expected", [
    ((0, 0), LEFT, (0, 0)),      # grid edge
    ((0, 0), UP, (0, 1)),
    ((0, 0), DOWN, (0, -1)),
    ((0, -1), DOWN, (0, -1)),    # grid edge
    ((0, 0), NOOP, (0, 0)),
    ((2, 1), RIGHT, (2, 1)),     # corridor entered only at y = 0
    ((2, 0), RIGHT, (3, 0)),
    ((3, 0), UP, (3, 0)),        # up/down are no-ops in a corridor
    ((4, 0), DOWN, (4, 0)),
    ((4, 0), LEFT, (3, 0)),
    ((3, 0), LEFT, (2, 0)),
    ((5, 0), RIGHT, (6, 0)),     # into room 1
    ((6, 1), LEFT, (6, 1)),      # corridor entered only at y = 0
    ((8, -1), UP, (8, 0)),
    ((14, 0), RIGHT, (14, 0)),   # last room: grid edge
    ((12, 0), LEFT, (11, 0)),
])
def test_rooms_moves(rooms_step, xy, action, expected):
    env, step = rooms_step
    state = step(rooms_at(env, xy, TASK3), one_hot(action))
    np.testing.assert_array_equal(state.inner["xy"], expected)
    np.testing.assert_allclose(state.obs, env.observe(jnp.asarray(expected)), atol=1e-7)


def test_rooms_probability_and_nan_actions(rooms_step):
    env, step = rooms_step
    state = step(rooms_at(env, (0, 0), TASK3), jnp.array([0.1, 0.5, 0.2, 0.1, 0.1]))
    np.testing.assert_array_equal(state.inner["xy"], (0, 1))  # argmax = up
    state = step(rooms_at(env, (0, 0), TASK3), jnp.array([jnp.nan, 0.0, 0.3, 0.0, 0.0]))
    np.testing.assert_array_equal(state.inner["xy"], (1, 0))  # NaN counts as 0 -> right


def test_rooms_task_distribution():
    env = Rooms()
    keys = jax.random.split(jax.random.key(0), 400)
    goals = np.asarray(jax.jit(jax.vmap(env.sample_task))(keys)["goals"])
    assert goals.shape == (400, 3, 2)
    for i in range(3):
        assert set(np.unique(goals[:, i, 0])) == {6 * i, 6 * i + 2}
        assert set(np.unique(goals[:, i, 1])) == {-1, 1}
    assert len({tuple(g.ravel()) for g in goals}) > 40  # many of the 64 tasks appear


def rooms_rewards(step, env, state, actions):
    rewards = []
    for a in actions:
        state = step(state, one_hot(a))
        rewards.append(round(float(state.reward), 4))
    return rewards, state


def test_rooms_goal_sequence(rooms_step):
    env, step = rooms_step
    # Goals: room 0 at (2, 1), room 1 at (6, -1), room 2 at (14, 1).
    state = rooms_at(env, (5, 0), TASK3)
    # Goal of room 1 before room 0: no reward (-0.1), flag stays clear.
    rewards, state = rooms_rewards(step, env, state, [RIGHT, DOWN])
    assert rewards == [-0.1, -0.1]
    assert not np.asarray(state.inner["reached"]).any()
    # Back to room 0's goal: +1 once, then -0.1 when staying or coming back.
    state = rooms_at(env, (1, 1), TASK3)
    rewards, state = rooms_rewards(step, env, state, [RIGHT, NOOP, LEFT, RIGHT])
    assert rewards == [1.0, -0.1, -0.1, -0.1]
    np.testing.assert_array_equal(state.inner["reached"], [True, False, False])
    # Room 1's goal now pays once.
    state = rooms_at(env, (6, 0), TASK3, reached=[True, False, False])
    rewards, state = rooms_rewards(step, env, state, [DOWN, NOOP, UP, DOWN])
    assert rewards == [1.0, -0.1, -0.1, -0.1]
    # Room 2's goal is skipped while room 1's is not reached ...
    state = rooms_at(env, (14, 0), TASK3, reached=[True, False, False])
    rewards, _ = rooms_rewards(step, env, state, [UP, NOOP])
    assert rewards == [-0.1, -0.1]
    # ... and pays on every step once rooms 0 and 1 are done (last goal).
    state = rooms_at(env, (14, 0), TASK3, reached=[True, True, False])
    rewards, state = rooms_rewards(step, env, state, [UP, NOOP, NOOP, DOWN, UP])
    assert rewards == [1.0, 1.0, 1.0, -0.1, 1.0]
    np.testing.assert_array_equal(state.inner["reached"], [True, True, True])
    # Reset clears the flags.
    assert not np.asarray(env.reset(jax.random.key(0), TASK3).inner["reached"]).any()


def test_rooms_single_room_last_goal_pays_every_step():
    env = Rooms(num_rooms=1)
    assert env.width == 3
    task = {"goals": jnp.array([[2, -1]], jnp.int32)}
    state = rooms_at(env, (2, 0), task)
    rewards, _ = rooms_rewards(jax.jit(env.step), env, state, [RIGHT, DOWN, NOOP, NOOP])
    assert rewards == [-0.1, 1.0, 1.0, 1.0]


# -- rendering ------------------------------------------------------------------------------
@pytest.mark.parametrize("name, task", [
    ("point_robot", {"goal": np.array([0.0, 1.0])}),
    ("escape_room", door(1.0)),
    ("rooms", TASK3),
])
def test_render_writes_png(tmp_path, name, task):
    from envs.render import render_meta_episode

    env = envs.make(name)
    t = np.linspace(0, 1, 30)
    positions = np.stack([t, t], -1) * (10 if name == "rooms" else 1)
    sub_idx = np.repeat(np.arange(3), 10)
    path = render_meta_episode(name, positions, sub_idx, task, str(tmp_path / f"{name}.png"),
                               title=name, starts=np.zeros((3, 2)))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        render_meta_episode(env, positions[:, :1], sub_idx, task, str(tmp_path / "bad.png"))


def _scripted_returns(name: str, K: int, H: int, n: int) -> np.ndarray:
    """Per-sub-episode returns [n, K] of ``name``'s scripted policy on n tasks from a fixed key."""
    from envs import scripted
    from mamba_jax import collect as collect_lib

    meta = envs.MetaEpisode(envs.make(name), K=K, H=H)
    policy, init = scripted.scripted_for(name, meta)
    tasks = jax.vmap(meta.env.sample_task)(jax.random.split(jax.random.PRNGKey(0), n))
    rollout, _ = jax.jit(lambda k: collect_lib.collect(meta, policy, init(n), k, n, tasks=tasks))(
        jax.random.PRNGKey(1))
    return np.asarray(collect_lib.sub_episode_returns(rollout, K))


def test_rooms_scripted_search_finds_every_goal_then_goes_straight_to_them():
    """The Rooms reference policy: sub-episode 1 searches the corners, later sub-episodes walk
    straight to the known goals (same path every time), so they score more than the first."""
    ret = _scripted_returns("rooms", K=3, H=100, n=32)  # [n, 3]
    np.testing.assert_allclose(ret[:, 1], ret[:, 2], atol=1e-4)
    assert np.all(ret[:, 1] >= ret[:, 0]) and np.mean(ret[:, 1] - ret[:, 0]) > 3.0
    # every goal found: the last goal pays on most of the 100 steps (-0.1 per step otherwise)
    assert ret[:, 0].min() > 60.0 and ret[:, 1].min() > 78.0


def test_escape_room_scripted_sweep_escapes_every_time_and_faster_once_the_door_is_known():
    from envs import scripted

    ret = _scripted_returns("escape_room", K=2, H=60, n=64)  # [n, 2]: steps spent outside
    assert ret.min() > 0  # out through the door in every sub-episode
    assert ret[:, 1].mean() > ret[:, 0].mean() + 5.0 and ret[:, 1].min() > 30.0
    meta = envs.MetaEpisode(envs.make("escape_room"), K=2, H=60)
    assert scripted.scripted_for("humanoid_dir", meta) is None  # no reference for that task


def test_options_list_every_constructor_option_with_its_default():
    assert envs.options("point_robot") == {"goal_radius": 0.2, "reward_offset": 0.0}
    assert envs.options("point_robot_wind") == {"goal_radius": 0.2, "reward_offset": 0.0,
                                                "wind_force": 0.3}
    assert envs.options("rooms") == {"num_rooms": 3}
    assert envs.option_names("escape_room") == {"door_width"}
    assert envs.resolve_options("point_robot_wind", {"wind_force": 0.0}) == {
        "goal_radius": 0.2, "reward_offset": 0.0, "wind_force": 0.0}
    assert envs.resolve_options("not_registered", {"a": 1}) == {"a": 1}
    for fn in (envs.options, envs.option_names):
        with pytest.raises(ValueError, match="valid names:.*point_robot"):
            fn("no_such_env")
    # every registered task's options are plain values that make() accepts back
    for name in envs.registered_names():
        opts = envs.options(name)
        assert set(opts) <= envs.option_names(name), name
        assert all(isinstance(v, (bool, int, float, str)) for v in opts.values()), name
