"""MJX tasks (envs/mjx_tasks.py): rewards by hand, dynamics sanity, determinism, vmap, and the
tuned MJX models against native MuJoCo (mj_step on the untuned XML) over short rollouts.

Kept cheap: every jitted function is compiled once per module (module-scoped fixtures), batches
of 2, rollouts of 30-40 steps.
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
@pytest.mark.parametrize("name", ["reacher_goal", "cheetah_vel", "cheetah_dir"])
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
