"""MJX tasks (envs/mjx_tasks.py): rewards by hand, dynamics sanity, determinism, vmap, and the
tuned MJX models against native MuJoCo (mj_step on the untuned XML) over short rollouts.

Kept cheap: every jitted function is compiled once per module (module-scoped fixtures), batches
of 2, rollouts of 30-40 steps (Humanoid: 15 steps; its reset, rollout and meta-episode programs
take ~20-45 s each to compile on a 2-core CPU).
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # before the first `import mujoco` (rendering test)
mujoco = pytest.importorskip("mujoco")
pytest.importorskip("mujoco.mjx")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import envs  # noqa: E402
from envs import mjx_tasks  # noqa: E402

T_REACHER = 40
T_CHEETAH = 30
T_HUMANOID = 15
B = 2


def _rollout_fn(env):
    """jit(keys [B], task, actions [T, B, A]) -> (first states, stacked states over T)."""

    def rollout(keys, task, actions):
        s0 = jax.vmap(env.reset, in_axes=(0, None))(keys, task)

        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, s

        _, traj = jax.lax.scan(body, s0, actions)
        return s0, traj

    return jax.jit(rollout)


def _native_rollout(env, qpos, qvel, actions):
    """Native mj_step on the UNTUNED reference model; returns qpos [T, nq], qvel [T, nv]."""
    m = env.reference_mj_model
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    d.qvel[:] = qvel
    qs, vs = [], []
    for a in actions:
        d.ctrl[:] = a
        for _ in range(env.frame_skip):
            mujoco.mj_step(m, d)
        qs.append(d.qpos.copy())
        vs.append(d.qvel.copy())
    return np.array(qs), np.array(vs)


@pytest.fixture(scope="module")
def reacher():
    env = envs.make("reacher_goal")
    task = env.sample_task(jax.random.key(3))
    actions = np.random.default_rng(0).uniform(-1, 1, (T_REACHER, B, 2)).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), B)
    run = _rollout_fn(env)
    s0, traj = run(keys, task, actions)
    return dict(env=env, task=task, actions=actions, keys=keys, run=run, s0=s0, traj=traj)


@pytest.fixture(scope="module")
def cheetah():
    env = envs.make("cheetah_vel")
    task = {"goal_vel": jnp.float32(1.5)}
    actions = np.random.default_rng(0).uniform(-1, 1, (T_CHEETAH, B, 6)).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), B)
    run = _rollout_fn(env)
    s0, traj = run(keys, task, actions)
    return dict(env=env, task=task, actions=actions, keys=keys, run=run, s0=s0, traj=traj)


# -- registry and shapes -------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "reacher_goal", "cheetah_vel", "cheetah_dir", "humanoid_dir"])
def test_registered_and_shapes(name):
    env = envs.make(name)
    assert name in envs.registered_names()
    task = env.sample_task(jax.random.key(0))
    state = jax.eval_shape(env.reset, jax.random.key(0), task)
    assert state.obs.shape == (env.obs_dim,) and state.obs.dtype == jnp.float32
    nxt = jax.eval_shape(env.step, state, jnp.zeros(env.action_dim))
    assert nxt.obs.shape == (env.obs_dim,)
    assert nxt.reward.shape == () and nxt.done.shape == ()
    with pytest.raises(ValueError):
        jax.eval_shape(env.step, state, jnp.zeros(env.action_dim + 1))


def test_model_assets_found_relative_to_module():
    assert (mjx_tasks.ASSET_DIR / "reacher.xml").is_file()
    assert (mjx_tasks.ASSET_DIR / "half_cheetah.xml").is_file()
    m = envs.make("cheetah_vel").reference_mj_model
    assert abs(m.body_mass.sum() - 14.0) < 1e-3  # the standard 14 kg cheetah
    assert m.opt.iterations == 100 and m.opt.ls_iterations == 50  # untuned reference options


def test_bad_contacts_option():
    with pytest.raises(ValueError, match="contacts"):
        envs.make("cheetah_vel", contacts="knees").mj_model


# -- rewards against hand-computed values --------------------------------------------------------
def test_reacher_reward_by_hand():
    env = envs.make("reacher_goal")
    goal = jnp.array([0.1, 0.0])
    a0 = jnp.zeros(2)
    assert float(env.reward(jnp.array([0.1, 0.0]), goal, a0)) == pytest.approx(1.0)
    assert float(env.reward(jnp.array([0.1, 0.025]), goal, a0)) == pytest.approx(0.5, abs=1e-6)
    assert float(env.reward(jnp.array([0.1, 0.06]), goal, a0)) == pytest.approx(0.0)
    a = jnp.array([1.0, -0.5])  # ||a||^2 = 1.25
    assert float(env.reward(jnp.array([0.1, 0.06]), goal, a)) == pytest.approx(-0.0125)
    assert float(env.reward(jnp.array([0.11, 0.0]), goal, a)) == pytest.approx(0.8 - 0.0125, abs=1e-6)


def test_cheetah_rewards_by_hand():
    a = jnp.full((6,), 0.5)  # ||a||^2 = 1.5, cost 0.075
    vel = envs.make("cheetah_vel")
    r = vel.reward(jnp.float32(1.0), a, {"goal_vel": jnp.float32(2.5)})
    assert float(r) == pytest.approx(-1.5 - 0.075, abs=1e-6)
    dirn = envs.make("cheetah_dir")
    assert float(dirn.reward(jnp.float32(2.0), a, {"direction": jnp.float32(-1.0)})) == (
        pytest.approx(-2.0 - 0.075, abs=1e-6))
    assert float(dirn.reward(jnp.float32(2.0), a, {"direction": jnp.float32(1.0)})) == (
        pytest.approx(2.0 - 0.075, abs=1e-6))


def test_task_distributions():
    keys = jax.random.split(jax.random.key(0), 256)
    goals = jax.vmap(envs.make("reacher_goal", num_goals=3).sample_task)(keys)["goals"]
    assert goals.shape == (256, 3, 2)
    r = np.linalg.norm(np.asarray(goals), axis=-1)
    assert r.max() <= 0.195 + 1e-6 and r.mean() > 0.1  # uniform by area: mean radius 0.13
    v = np.asarray(jax.vmap(envs.make("cheetah_vel").sample_task)(keys)["goal_vel"])
    assert 0.0 <= v.min() and v.max() <= 3.0 and 1.2 < v.mean() < 1.8
    d = np.asarray(jax.vmap(envs.make("cheetah_dir").sample_task)(keys)["direction"])
    assert set(np.unique(d)) == {-1.0, 1.0}


def test_reacher_goal_advances_in_order(reacher):
    """Goals at the reset fingertip of env 0: zero torque keeps the arm still (planar, no gravity).

    Reuses the fixture's compiled rollout (same shapes, new task values: no recompilation).
    """
    run, keys = reacher["run"], reacher["keys"]
    zeros = np.zeros_like(reacher["actions"])
    tip = reacher["s0"].obs[0, :2]
    far = jnp.array([0.5, 0.5])
    # [tip, far]: goal 0 pays once (then the index moves on), the far goal never pays.
    _, traj = run(keys, {"goals": jnp.stack([tip, far])}, zeros)
    r, idx = np.asarray(traj.reward[:, 0]), np.asarray(traj.inner["goal_idx"][:, 0])
    assert r[0] == pytest.approx(1.0, abs=1e-3) and idx[0] == 1
    np.testing.assert_allclose(r[1:], 0.0)
    assert np.all(idx == 1)  # the last goal never advances past N-1
    # [tip, tip]: the last goal pays on every step it is held.
    _, traj = run(keys, {"goals": jnp.stack([tip, tip])}, zeros)
    np.testing.assert_allclose(np.asarray(traj.reward[:, 0]), 1.0, atol=1e-3)
    assert np.all(np.asarray(traj.inner["goal_idx"][:, 0]) == 1)
    tips = np.asarray(traj.obs[:, 0, :2])
    np.testing.assert_allclose(tips, np.broadcast_to(np.asarray(tip), tips.shape), atol=2e-5)


def test_cheetah_reward_matches_displacement(cheetah):
    env, traj, s0 = cheetah["env"], cheetah["traj"], cheetah["s0"]
    x = np.concatenate([np.asarray(s0.inner.qpos)[None, :, 0], np.asarray(traj.inner.qpos)[..., 0]])
    vel = (x[1:] - x[:-1]) / 0.05
    a = cheetah["actions"]
    expected = -np.abs(vel - 1.5) - 0.05 * np.sum(a**2, -1)
    np.testing.assert_allclose(np.asarray(traj.reward), expected, atol=1e-4)


# -- dynamics sanity --------------------------------------------------------------------------------
def test_reacher_dynamics_sanity(reacher):
    traj, a = reacher["traj"], reacher["actions"]
    tip = np.asarray(traj.obs[..., :2])
    assert np.all(np.linalg.norm(tip, axis=-1) <= 0.24 + 1e-5)  # arm reach
    # First step from rest: v = dt * M^-1 (gear * a) (+ damping), so the motors do positive work.
    v1 = np.asarray(traj.obs[0, :, 2:])
    assert np.all(np.sum(v1 * a[0], axis=-1) > 0)
    wrist = np.asarray(traj.inner["data"].qpos[..., 1])
    assert np.all(np.abs(wrist) < np.deg2rad(160) + 0.1)  # joint limit holds
    assert not np.any(np.asarray(traj.done))


def test_cheetah_dynamics_sanity(cheetah):
    qpos = np.asarray(cheetah["traj"].inner.qpos)
    z = qpos[..., 1]  # rootz, relative to the 0.7 m start height
    assert z[-1].max() < -0.05  # it fell towards the floor ...
    assert z.min() > -0.7  # ... but not through it
    assert np.all(np.isfinite(qpos)) and not np.any(np.asarray(cheetah["traj"].done))
    obs = np.asarray(cheetah["traj"].obs)
    np.testing.assert_array_equal(obs[..., :8], qpos[..., 1:])


# -- determinism and vmap -----------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["reacher", "cheetah"])
def test_deterministic_and_batched(fixture, request):
    f = request.getfixturevalue(fixture)
    s0, traj = f["run"](f["keys"], f["task"], f["actions"])
    np.testing.assert_array_equal(np.asarray(traj.obs), np.asarray(f["traj"].obs))
    np.testing.assert_array_equal(np.asarray(traj.reward), np.asarray(f["traj"].reward))
    # The B environments of the batch start differently (different keys) ...
    assert not np.allclose(np.asarray(s0.obs[0]), np.asarray(s0.obs[1]))
    # ... and a new key changes the start.
    s0b, _ = f["run"](jax.random.split(jax.random.key(99), B), f["task"], f["actions"])
    assert not np.allclose(np.asarray(s0b.obs), np.asarray(s0.obs))


# -- tuned MJX vs native MuJoCo -------------------------------------------------------------------
# Tolerances: MJX runs in float32 with a capped solver, native in float64 with MuJoCo's defaults
# (100 iterations). Before the cheetah lands (first 10 steps) both agree to ~1e-6. Once the feet
# hit the stiff floor (solref 0.02), float32 rounding gets amplified at every impact: UNTUNED MJX
# (all contacts, 100 iterations) itself drifts to 4e-4 in qpos and 0.04 in qvel by step 30 on
# these rollouts; the tuned model reaches 8e-4..2e-3 and 0.08 (the exact figure changes between
# XLA compilations: float32 rounding at impacts). The bounds are ~5x/3x of that.
@pytest.mark.parametrize("fixture,tol_q,tol_v", [("reacher", 1e-3, 1e-2), ("cheetah", 1e-2, 0.25)])
def test_tuned_mjx_matches_native_reference(fixture, tol_q, tol_v, request):
    f = request.getfixturevalue(fixture)
    env = f["env"]
    inner0 = f["s0"].inner["data"] if fixture == "reacher" else f["s0"].inner
    inner = f["traj"].inner["data"] if fixture == "reacher" else f["traj"].inner
    for b in range(B):
        q_ref, v_ref = _native_rollout(
            env, np.asarray(inner0.qpos[b]), np.asarray(inner0.qvel[b]), f["actions"][:, b])
        np.testing.assert_allclose(np.asarray(inner.qpos[:10, b]), q_ref[:10], atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(inner.qpos[:, b]), q_ref, atol=tol_q, rtol=0)
        np.testing.assert_allclose(np.asarray(inner.qvel[:, b]), v_ref, atol=tol_v, rtol=0)
    if fixture == "reacher":  # the observed fingertip is the post-step one
        m = env.reference_mj_model
        d = mujoco.MjData(m)
        d.qpos[:] = np.asarray(inner.qpos[-1, 0])
        mujoco.mj_kinematics(m, d)
        np.testing.assert_allclose(np.asarray(f["traj"].obs[-1, 0, :2]),
                                   d.xpos[m.body("fingertip").id, :2], atol=1e-5)


# -- rendering ---------------------------------------------------------------------------------
def test_render_five_frame_gif(reacher, tmp_path):
    from envs import render_mujoco

    ok, reason = render_mujoco.rendering_available()
    if not ok:
        pytest.skip(reason)
    traj = jax.tree.map(lambda x: x[:5, 0], reacher["traj"])
    path = render_mujoco.render_rollout(reacher["env"], traj, str(tmp_path / "r.gif"), fps=10,
                                        width=64, height=64)
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames == 5 and im.size == (64, 64)
        im.seek(0)
        frame = np.asarray(im.convert("RGB"))
    assert frame.std() > 1.0  # not a blank image


# -- Humanoid-Dir ----------------------------------------------------------------------------------
HUMANOID_THETA = 0.3


def _lying_qpos(model) -> np.ndarray:
    """qpos0 rotated 90 deg about y (lying on its back, legs along x), torso 0.3 m up: every geom
    is above the floor, so nothing pushes it back up within one step."""
    q = np.array(model.qpos0)
    q[2] = 0.3
    q[3:7] = [np.cos(np.pi / 4), 0.0, np.sin(np.pi / 4), 0.0]
    return q


@pytest.fixture(scope="module")
def humanoid():
    env = envs.make("humanoid_dir")
    task = {"theta": jnp.float32(HUMANOID_THETA)}
    actions = np.random.default_rng(0).uniform(-1, 1, (T_HUMANOID, B, 17)).astype(np.float32)
    keys = jax.random.split(jax.random.key(1), B)
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))

    def rollout(s0, actions):
        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, s

        return jax.lax.scan(body, s0, actions)[1]

    run = jax.jit(rollout)  # takes start states, so tests can pose the humanoid themselves
    s0 = reset(keys, task)
    traj = run(s0, actions)
    return dict(env=env, task=task, actions=actions, keys=keys, reset=reset, run=run, s0=s0,
                traj=traj)


def _native_humanoid(model, qpos, qvel, actions, theta=HUMANOID_THETA):
    """gym's HumanoidEnv step on native MuJoCo (cfrc_ext via mj_rnePostConstraint).

    Returns qpos [T, nq], qvel [T, nv], obs [T, 376], reward [T].
    """
    d = mujoco.MjData(model)
    d.qpos[:] = qpos
    d.qvel[:] = qvel
    mujoco.mj_forward(model, d)
    mass = model.body_mass

    def com():
        return (mass[:, None] * d.xipos).sum(0)[:2] / mass.sum()

    before = com()
    qs, vs, obs, rewards = [], [], [], []
    for a in actions:
        d.ctrl[:] = 0.4 * a
        for _ in range(5):
            mujoco.mj_step(model, d)
        mujoco.mj_rnePostConstraint(model, d)
        after = com()
        progress = 0.25 * np.dot(after - before, [np.cos(theta), np.sin(theta)]) / 0.003
        contact = min(10.0, 5e-7 * np.sum(d.cfrc_ext**2))
        rewards.append(progress - 0.1 * np.sum((0.4 * a) ** 2) - contact + 5.0)
        before = after
        qs.append(d.qpos.copy())
        vs.append(d.qvel.copy())
        obs.append(np.concatenate([d.qpos[2:], d.qvel, d.cinert.ravel(), d.cvel.ravel(),
                                   d.qfrc_actuator, d.cfrc_ext.ravel()]))
    return np.array(qs), np.array(vs), np.array(obs), np.array(rewards)


def test_humanoid_model_and_shapes():
    env = envs.make("humanoid_dir")
    assert (env.obs_dim, env.action_dim, env.default_K, env.default_H) == (376, 17, 2, 200)
    assert (mjx_tasks.ASSET_DIR / "humanoid.xml").is_file()
    ref = env.reference_mj_model
    assert (ref.nq, ref.nv, ref.nu, ref.nbody) == (24, 23, 17, 14)
    # the observation layout: qpos[2:] + qvel + 14 x (10 + 6) + qfrc_actuator + 14 x 6
    assert (ref.nq - 2) + ref.nv + ref.nbody * 16 + ref.nv + ref.nbody * 6 == 376
    assert ref.opt.timestep == pytest.approx(0.003) and env.dt == pytest.approx(0.015)
    assert ref.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4  # gym's options, untuned
    assert ref.opt.solver == mujoco.mjtSolver.mjSOL_PGS and ref.opt.iterations == 50
    np.testing.assert_allclose(ref.actuator_ctrlrange, np.tile([-0.4, 0.4], (17, 1)))
    assert sorted(set(ref.actuator_gear[:, 0])) == [25, 100, 200, 300]
    assert abs(ref.body_mass.sum() - 42.116) < 1e-2  # geoms at density 1000
    # Tuned: Newton + Euler, only the feet touch the floor (and not each other).
    m = env.mj_model
    assert m.opt.solver == mujoco.mjtSolver.mjSOL_NEWTON
    assert m.opt.integrator == mujoco.mjtIntegrator.mjINT_EULER
    touching = {m.geom(g).name for g in range(m.ngeom)
                if m.geom_contype[g] or m.geom_conaffinity[g]}
    assert touching == {"floor", "left_foot", "right_foot"}
    assert not any(m.geom_conaffinity[m.geom(n).id] for n in ("left_foot", "right_foot"))
    with pytest.raises(ValueError, match="contacts"):
        envs.make("humanoid_dir", contacts="hands").mj_model
    keys = jax.random.split(jax.random.key(0), 512)
    thetas = np.asarray(jax.vmap(env.sample_task)(keys)["theta"])
    assert 0.0 <= thetas.min() and thetas.max() < 2 * np.pi and 2.8 < thetas.mean() < 3.5


def test_humanoid_reward_by_hand():
    env = envs.make("humanoid_dir")
    nb = 14
    zero2, ctrl0, cfrc0 = jnp.zeros(2), jnp.zeros(17), jnp.zeros((nb, 6))
    east = {"theta": jnp.float32(0.0)}
    r = lambda *args: float(env.reward(*args))  # noqa: E731
    assert r(zero2, zero2, ctrl0, cfrc0, east) == pytest.approx(5.0)  # alive bonus only
    # 1.2 cm of com progress per env step: 0.25 * 0.012 / 0.003 (the PHYSICS timestep) = 1.0
    step = jnp.array([0.012, 0.0])
    assert r(zero2, step, ctrl0, cfrc0, east) == pytest.approx(6.0, abs=1e-5)
    west, north = {"theta": jnp.float32(np.pi)}, {"theta": jnp.float32(np.pi / 2)}
    assert r(zero2, step, ctrl0, cfrc0, west) == pytest.approx(4.0, abs=1e-5)
    assert r(zero2, step, ctrl0, cfrc0, north) == pytest.approx(5.0, abs=1e-5)
    diag = jnp.array([0.006, 0.006])  # along (cos 45, sin 45): |d| = 0.006 * sqrt(2)
    assert r(zero2, diag, ctrl0, cfrc0, {"theta": jnp.float32(np.pi / 4)}) == pytest.approx(
        5.0 + 0.25 * 0.006 * np.sqrt(2) / 0.003, abs=1e-5)
    # ctrl cost 0.1 * ||ctrl||^2 with ctrl = 0.4 * action: a full-throttle action costs 0.272
    ctrl = 0.4 * jnp.ones(17)
    assert r(zero2, zero2, ctrl, cfrc0, east) == pytest.approx(5.0 - 0.1 * 17 * 0.16, abs=1e-5)
    # contact cost 5e-7 * ||cfrc_ext||^2, capped at 10
    cfrc = jnp.zeros((nb, 6)).at[3, 5].set(1000.0)  # ||.||^2 = 1e6 -> 0.5
    assert r(zero2, zero2, ctrl0, cfrc, east) == pytest.approx(4.5, abs=1e-5)
    assert r(zero2, zero2, ctrl0, cfrc * 100, east) == pytest.approx(-5.0, abs=1e-4)  # capped


def test_humanoid_rollout_reward_matches_its_parts(humanoid):
    """The rollout's rewards recomputed from what it carries: com_xy, ctrl, cfrc_ext (obs tail)."""
    s0, traj, a = humanoid["s0"], humanoid["traj"], humanoid["actions"]
    com = np.concatenate([np.asarray(s0.inner["com_xy"])[None], np.asarray(traj.inner["com_xy"])])
    th = HUMANOID_THETA
    progress = 0.25 * (com[1:] - com[:-1]) @ np.array([np.cos(th), np.sin(th)]) / 0.003
    cfrc = np.asarray(traj.obs[..., -84:], np.float64)
    contact = np.minimum(10.0, 5e-7 * np.sum(cfrc**2, -1))
    expected = progress - 0.1 * np.sum((0.4 * a) ** 2, -1) - contact + 5.0
    np.testing.assert_allclose(np.asarray(traj.reward), expected, atol=1e-3)
    assert np.any(contact > 0)  # the feet landed: cfrc_ext is live, not the zeros of gym >= 2.0
    obs0 = np.asarray(s0.obs)
    np.testing.assert_array_equal(obs0[:, :22], np.asarray(s0.inner["data"].qpos)[:, 2:])
    np.testing.assert_allclose(obs0[:, 22 + 23 + 140 + 84:][:, :23], 0.0)  # ctrl = 0 at reset


def test_humanoid_termination(humanoid):
    env = humanoid["env"]
    assert bool(env.healthy(jnp.float32(1.0))) and bool(env.healthy(jnp.float32(2.0)))
    assert not bool(env.healthy(jnp.float32(0.999))) and not bool(env.healthy(jnp.float32(2.001)))
    traj = humanoid["traj"]
    z = np.asarray(traj.inner["data"].qpos[..., 2])
    np.testing.assert_array_equal(np.asarray(traj.done), (z < 1.0) | (z > 2.0))
    assert not np.any(np.asarray(traj.done[:5]))  # a fresh start stands for a while
    # Posed starts, same compiled rollout: lying on the floor (torso 0.3 m) and in the air (2.5 m).
    s0 = humanoid["s0"]
    qpos = np.array(s0.inner["data"].qpos)
    qpos[0] = _lying_qpos(env.mj_model)
    qpos[1, 2] = 2.5
    phys = s0.inner["data"].replace(qpos=jnp.asarray(qpos))
    posed = s0.replace(inner={**s0.inner, "data": phys})
    traj = humanoid["run"](posed, humanoid["actions"])
    z1 = np.asarray(traj.inner["data"].qpos[0, :, 2])
    assert z1[0] < 1.0 and z1[1] > 2.0
    np.testing.assert_array_equal(np.asarray(traj.done[0]), [True, True])


def test_humanoid_deterministic_and_batched(humanoid):
    f = humanoid
    s0 = f["reset"](f["keys"], f["task"])
    np.testing.assert_array_equal(np.asarray(s0.obs), np.asarray(f["s0"].obs))
    traj = f["run"](s0, f["actions"])
    np.testing.assert_array_equal(np.asarray(traj.obs), np.asarray(f["traj"].obs))
    np.testing.assert_array_equal(np.asarray(traj.reward), np.asarray(f["traj"].reward))
    assert not np.allclose(np.asarray(s0.obs[0]), np.asarray(s0.obs[1]))
    s0b = f["reset"](jax.random.split(jax.random.key(99), B), f["task"])
    assert not np.allclose(np.asarray(s0b.obs), np.asarray(s0.obs))
    # reset noise: U(-0.01, 0.01) around qpos0 and around 0 for qvel; the noisy root quaternion
    # comes back normalised (0.01 * 1.02 bounds its scaled entries)
    qpos = np.asarray(s0.inner["data"].qpos)
    dq = np.abs(qpos - np.asarray(f["env"].mj_model.qpos0, np.float32))
    assert np.all(dq[:, :3] <= 0.01) and np.all(dq[:, 7:] <= 0.01) and np.all(dq[:, 3:7] <= 0.0102)
    np.testing.assert_allclose(np.linalg.norm(qpos[:, 3:7], axis=-1), 1.0, atol=1e-6)
    assert np.all(np.abs(np.asarray(s0.inner["data"].qvel)) <= 0.01)


# MJX against native MuJoCo on the SAME (tuned) model: the step, the observation (cinert, cvel,
# qfrc_actuator, and cfrc_ext from mjx.rne_postconstraint vs mj_rnePostConstraint) and the reward.
# Measured on this rollout (both starts, 15 steps, 5-6 of them with foot contacts): qpos 5e-6,
# qvel 9e-5, reward 5e-6; each observation block within 6e-6 of its scale (max |entry|, >= 1;
# cfrc_ext reaches 1.7e3 at the landing). Bounds: 20x (qpos, qvel), ~100x (reward, obs).
def test_humanoid_mjx_matches_native_same_model(humanoid):
    env, s0, traj = humanoid["env"], humanoid["s0"], humanoid["traj"]
    for b in range(B):
        q, v, obs, rew = _native_humanoid(
            env.mj_model, np.asarray(s0.inner["data"].qpos[b]),
            np.asarray(s0.inner["data"].qvel[b]), humanoid["actions"][:, b])
        np.testing.assert_allclose(np.asarray(traj.inner["data"].qpos[:, b]), q, atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.asarray(traj.inner["data"].qvel[:, b]), v, atol=2e-3, rtol=0)
        np.testing.assert_allclose(np.asarray(traj.reward[:, b]), rew, atol=5e-4, rtol=0)
        mjx_obs = np.asarray(traj.obs[:, b])
        for lo, hi in [(0, 22), (22, 45), (45, 185), (185, 269), (269, 292), (292, 376)]:
            scale = max(1.0, np.abs(obs[:, lo:hi]).max())
            assert np.abs(mjx_obs[:, lo:hi] - obs[:, lo:hi]).max() <= 5e-4 * scale, (lo, hi)


# Tuned MJX against the REFERENCE model (gym's options: RK4, PGS with 50 iterations, every contact
# pair). The whole gap is the integrator: the tuned Newton 4/8 solver and feet-only contacts with
# gym's RK4 reproduce the reference natively to 9e-6 in qpos and 3e-4 in qvel (checked below;
# MJX with integrator='rk4' gave 8e-6 in qpos), while semi-implicit Euler (MJX RK4 is ~6x slower)
# drifts on this rollout by 4.4e-3 m in the root position, 6.4e-2 rad in the joint angles
# (3.8e-2 over the first 5 steps) and 2-5 in qvel / 1.7-4.3 in reward at the landing; other
# starts reach ~0.16 rad. For scale: gym's own RK4 at 0.003 s differs from RK4 at 0.0003 s by
# 2e-2 in qpos over 15 steps, Euler at 0.003 s by 4e-2. Bounds: ~5x the root and joint drift.
def test_humanoid_tuned_mjx_vs_reference(humanoid):
    env, s0, traj = humanoid["env"], humanoid["s0"], humanoid["traj"]
    rk4_tuned = envs.make("humanoid_dir", integrator="rk4").mj_model  # native only, no MJX compile
    for b in range(B):
        start = (np.asarray(s0.inner["data"].qpos[b]), np.asarray(s0.inner["data"].qvel[b]),
                 humanoid["actions"][:, b])
        q_ref, v_ref, _, r_ref = _native_humanoid(env.reference_mj_model, *start)
        q_rk4, v_rk4, _, _ = _native_humanoid(rk4_tuned, *start)
        np.testing.assert_allclose(q_rk4, q_ref, atol=1e-4, rtol=0)
        np.testing.assert_allclose(v_rk4, v_ref, atol=1e-2, rtol=0)
        q = np.asarray(traj.inner["data"].qpos[:, b])
        np.testing.assert_allclose(q[:, :3], q_ref[:, :3], atol=2e-2, rtol=0)  # root position
        np.testing.assert_allclose(q[:, 7:], q_ref[:, 7:], atol=0.3, rtol=0)  # joint angles
        np.testing.assert_allclose(q[:5], q_ref[:5], atol=0.1, rtol=0)  # before the landing


def test_humanoid_meta_episode_under_jit(humanoid):
    """MetaEpisode over humanoid_dir (K=2, H=4) in one jitted program: env 0 starts lying down, so
    its first sub-episode ends after one step (base done) and the meta-episode goes on."""
    env = humanoid["env"]
    meta = envs.MetaEpisode(env, K=2, H=4)
    lying = jnp.asarray(_lying_qpos(env.mj_model), jnp.float32)

    def run(key, actions, lie_down):
        ms = jax.vmap(meta.reset)(jax.random.split(key, B))
        phys = ms.env_state.inner["data"]
        phys = phys.replace(qpos=jnp.where(lie_down[:, None], lying, phys.qpos))
        ms = ms.replace(env_state=ms.env_state.replace(inner={**ms.env_state.inner, "data": phys}))

        def body(ms, a):
            ms = jax.vmap(meta.step)(ms, a)
            return ms, ms

        return jax.lax.scan(body, ms, actions)[1]

    actions = jnp.asarray(humanoid["actions"][:10])
    traj = jax.jit(run)(jax.random.key(5), actions, jnp.array([True, False]))
    assert traj.obs["state"].shape == (10, B, 376)
    assert np.all(np.isfinite(np.asarray(traj.obs["state"])))
    term = np.asarray(traj.obs["is_terminal"])
    sub_done, done = np.asarray(traj.sub_done), np.asarray(traj.done)
    # env 0: terminal at step 1, then a full 4-step sub-episode: over after 5 steps
    np.testing.assert_array_equal(term[:, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(sub_done[:, 0], [1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(done[:, 0], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    # env 1: two full sub-episodes of H=4 steps
    assert not term[:, 1].any()
    np.testing.assert_array_equal(sub_done[:, 1], [0, 0, 0, 1, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(done[:, 1], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(np.asarray(traj.obs["time_step"][:8, 1]), np.arange(1, 9) / 8)
    np.testing.assert_allclose(np.asarray(traj.reward[5:, 0]), 0.0)  # frozen after the end
    # the second sub-episode of env 0 starts standing (a pre-drawn start of the same task)
    assert np.all(np.asarray(traj.env_state.inner["data"].qpos[1:4, 0, 2]) > 1.2)


# With jaxlib < 0.11.2 a batch of more than 50 humanoids factorises its 23x23 matrices in LAPACK
# chunks that jaxlib runs inline (envs/cpu_linalg.py: a split batched LAPACK call can deadlock
# XLA's CPU thread pool). The physics must not change: the same start states and actions,
# batched 64-wide, against the small-batch
# rollout (15 steps, with foot contacts). Measured max abs difference: qpos 5e-6, qvel 1.3e-4;
# bounds ~10x.
def test_humanoid_large_batch_has_no_split_lapack_call_and_matches_small_batch(humanoid):
    from envs import cpu_linalg

    f = humanoid
    P = 64  # jaxlib splits a batch of 23x23 Cholesky factorisations from 50 on
    idx = np.arange(P) % B
    s_big = jax.tree_util.tree_map(lambda x: x[idx], f["s0"])
    a_big = f["actions"][:, idx]
    compiled = f["run"].lower(s_big, a_big).compile()
    if cpu_linalg.needs_workaround() and jax.default_backend() == "cpu":
        assert cpu_linalg.splitting_lapack_calls(compiled.as_text()) == []
    traj = compiled(s_big, a_big)
    for field, tol in (("qpos", 5e-5), ("qvel", 1e-3)):
        got = np.asarray(getattr(traj.inner["data"], field))[:, :B]
        want = np.asarray(getattr(f["traj"].inner["data"], field))
        np.testing.assert_allclose(got, want, atol=tol, rtol=0)


def test_probe_mjx_accuracy_rollouts_agree_with_native_before_landing(tmp_path):
    from experiments import probe_mjx_accuracy as probe

    env = envs.make("cheetah_vel")  # the default (tuned) settings
    actions = np.random.default_rng(1).uniform(-1, 1, (10, 2, 6)).astype(np.float32)
    q0, v0, q = probe.mjx_rollouts(env, jax.random.split(jax.random.key(7), 2),
                                   {"goal_vel": jnp.float32(1.5)}, actions)
    assert q.shape == (10, 2, env.mj_model.nq)
    for b in range(2):
        ref = probe.native_qpos(env, q0[b].astype(np.float64), v0[b].astype(np.float64), actions[:, b])
        np.testing.assert_allclose(q[:, b], ref, atol=1e-2, rtol=0)  # measured <= 2.4e-3 (16 rollouts)
