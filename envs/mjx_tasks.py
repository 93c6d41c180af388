"""MuJoCo meta-RL tasks simulated with MJX (``impl='jax'``): Reacher-N, HalfCheetah-Vel/-Dir,
Humanoid-Dir.

Every task is a frozen dataclass following ``envs.core.Env``; the physics state is an
``mjx.Data`` inside ``EnvState.inner``. Models are our own MJCF files in ``envs/assets/``.

Solver tuning (the way mujoco_playground tunes its MJX tasks). The XML files carry the ORIGINAL
options (Reacher, HalfCheetah: MuJoCo defaults, i.e. Newton, 100 iterations, 50 line-search
iterations, implicit damping in Euler; Humanoid: gym's RK4 + PGS with 50 iterations). Each task
overrides a few of them on the compiled model before ``mjx.put_model``:

* fewer solver / line-search iterations: under ``vmap`` the solver's ``while_loop`` runs until the
  slowest environment of the batch stops, and MJX always works on the full, fixed-size constraint
  set, so the iteration cap bounds the cost directly;
* collision pairs restricted with contype/conaffinity (HalfCheetah, ``contacts='feet'``): MJX
  evaluates every candidate pair at every physics step whether touching or not, each capsule-plane
  pair gives 2 contacts x 4 pyramid rows, so 8 body-floor pairs mean 64 constraint rows on every
  step, while native MuJoCo sees 0.6 contacts on average (measured, random actions);
* contacts disabled where the task has none (Reacher; already in its XML);
* solver and integrator replaced where the XML's are unsupported or costly in MJX (Humanoid: gym
  specifies PGS, which MJX lacks, and RK4, 4 forward passes per physics step). On the humanoid
  the solver and the feet-only contacts change nothing measurable (natively, RK4 + Newton 4/8 +
  feet vs the reference: 9e-6 in qpos over 15 env steps); RK4 -> Euler is the whole gap (see
  ``HumanoidDir`` and the tests), and MJX with RK4 ran ~6x slower (measured at 16 parallel).

Why HalfCheetah is slow in MJX on CPU (measured here, 2 shared cores, per CPU-second: native
~32k env steps, MJX ~5k at 64-256 parallel): MJX solves the fixed-size constraint set of all
candidate contacts every step; under ``vmap`` the solver ``while_loop`` runs for the slowest
environment and the line search (a scan of ``lax.cond``) executes all ``ls_iterations`` for every
environment, since a batched ``cond`` becomes a ``select``. Solver iterations and line-search
iterations are therefore the main cost knobs (100/50 -> 3/4 gave ~4x); fewer than that
(1 iteration, or no implicit damping) diverges from native MuJoCo within 10 steps. HalfCheetah now
uses 3/2: against native MuJoCo (float64, untuned XML) over 16 random-action rollouts of 30 env
steps, max qpos error per rollout, median / max over rollouts: untuned MJX 2e-6 / 1e-4 in the first
10 steps and 1.2e-3 / 0.07 over 30; 4/8 with feet-only contacts 3e-6 / 2e-3 and 2.5e-3 / 0.77;
3/2 the same as 4/8 (3e-6 / 2e-3, 2.5e-3 / 0.77); 3/1 slightly worse (2.7e-3 / 0.80); 2/2 far
worse (0.05 / 0.2 before landing, 0.33 / 0.73), so 3 iterations is the floor. The large
maxima come from one rollout in which a pruned body contact matters; float32 impacts make every
setting drift after the feet land. 3/2 ran 7.7-8.2k steps per CPU-second at 256 parallel against
4.0-4.3k for 4/8 (A/B/A/B in one process). ``experiments/probe_mjx_accuracy.py`` measures the
errors. Pruning the
collision pairs from 8 to 6 (or 2) gave at most ~20%, within the noise of a shared machine.

Linear algebra: on CPU with jaxlib < 0.11.2, large batches factorise their matrices in LAPACK
chunks that never wait on XLA's thread pool, or in fused code for small matrices
(``envs/cpu_linalg.py``: jaxlib's batched LAPACK kernels can deadlock that pool; Humanoid at 256
parallel hung every time before).

Where a HalfCheetah step goes (jax.profiler trace of the jitted, vmapped ``mjx.step`` at 256
envs, 3/2, per-op times): the solver ~55-60% (per Newton iteration the line search and the
Hessian J^T D J, a [9 x 22] x [22 x 9] batched dot at 150-250 us each), the fused 9x9 Cholesky
factorisations with their triangular solves ~28% (now LAPACK, see ``cpu_linalg.FUSED_CHOLESKY_N``:
1.28-1.46x on the whole benchmark at 256 parallel, none at 1024), and XLA:CPU's YNNPACK
reduce fusions (the line search's sums over constraint rows) ~15%. The training process turns
those off (``mamba_jax/memory.configure_process``); with its flags the benchmark ran 1.15-1.8x
faster than with jaxlib's defaults (A/B in one process through per-compile options), so
bench_mjx, which does not call it, understates the speed in training. Tried without a
measurable gain (A/B/A/B in one process, within the ~10-15% noise of this shared 2-core machine):
unrolling the ``frame_skip`` loop, the solver's ``while_loop`` as 3 unrolled iterations, the
constraint Hessian as one batched matvec with J_i J_j precomputed per physics step (1.03-1.06x),
elementwise triangular solves (substitution over scalar entries) instead of XLA's expansion; the
Hessian as broadcast-multiply-sum was 0.6x. No disable flag applies: the model has no friction
loss, sensors, tendons or equality constraints, and gravity, springs, damping, actuation and
clamping are all used.

Both cores: a plain ``jit(vmap(step))`` runs on one XLA CPU device and keeps ~1.1-1.3 of the 2
cores busy, because XLA:CPU does not spread these small batched ops over its thread pool.
``envs/parallel.py`` splits the batch over one device per core (``shard_map``, no communication):
HalfCheetah at 1024 parallel went from 10.8-12.1k to 26.5-33.7k env steps/s, 0.83-1.11 of native
single-thread MuJoCo on the wall clock and 0.42-0.57 per CPU-second (``bench_out/
bench_mjx_s9.json``, ``bench_mjx_cheetah_s9*.json``).

``tests/test_mjx_envs.py`` checks each tuned MJX model against native ``mujoco.mj_step`` on the
untuned model. ``experiments/bench_mjx.py`` measures the speed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import pathlib
import sys
from typing import ClassVar, Tuple

# MuJoCo picks its OpenGL backend when it is first imported. Headless Linux needs EGL (see
# envs/assets/SYSTEM_DEPS.txt); a value the user set wins.
if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mujoco  # noqa: E402

with contextlib.redirect_stdout(io.StringIO()):  # mjx prints a warning when warp is absent.
    from mujoco import mjx  # noqa: E402

from flax import struct  # noqa: E402

from envs import cpu_linalg  # noqa: E402
from envs.core import Env, EnvState, register  # noqa: E402

# MJX factorises several batched matrices per step: with jaxlib < 0.11.2's LAPACK kernels that can
# deadlock XLA:CPU's thread pool (envs/cpu_linalg.py), so lower them in non-blocking ways.
cpu_linalg.install_deadlock_free_linalg()

ASSET_DIR = pathlib.Path(__file__).resolve().parent / "assets"


# ----------------------------------------------------------------------------------------------
# Model loading (cached per option set: a frozen Env stays hashable and holds only plain fields)
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def reference_model(xml_name: str) -> mujoco.MjModel:
    """The model exactly as written in ``envs/assets/<xml_name>`` (untuned options)."""
    return mujoco.MjModel.from_xml_path(str(ASSET_DIR / xml_name))


@functools.lru_cache(maxsize=None)
def tuned_model(
    xml_name: str,
    iterations: int,
    ls_iterations: int,
    eulerdamp: bool,
    collide_geoms: Tuple[str, ...] | None,
    solver: str | None = None,
    integrator: str | None = None,
) -> mujoco.MjModel:
    """A copy of the reference model with the solver options and collision set overridden.

    Args:
        collide_geoms: names of the non-world geoms that may touch the world geoms; every other
            body geom gets contype = conaffinity = 0, and the listed ones conaffinity = 0 (they
            still meet the world geoms through their contype, but no longer each other). None
            keeps the XML's collision set.
        solver: 'newton' | 'cg' to replace the XML's solver (MJX has no PGS); None keeps it.
        integrator: 'euler' | 'rk4' | 'implicitfast' to replace the XML's; None keeps it.
    """
    m = mujoco.MjModel.from_xml_path(str(ASSET_DIR / xml_name))
    m.opt.iterations = iterations
    m.opt.ls_iterations = ls_iterations
    if not eulerdamp:
        m.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)
    if solver is not None:
        m.opt.solver = int(getattr(mujoco.mjtSolver, f"mjSOL_{solver.upper()}"))
    if integrator is not None:
        m.opt.integrator = int(getattr(mujoco.mjtIntegrator, f"mjINT_{integrator.upper()}"))
    if collide_geoms is not None:
        for g in range(m.ngeom):
            if m.geom_bodyid[g] == 0:
                continue
            if m.geom(g).name not in collide_geoms:
                m.geom_contype[g] = 0
            m.geom_conaffinity[g] = 0
    return m


@functools.lru_cache(maxsize=None)
def _put(*args) -> mjx.Model:
    # The first call may happen while tracing: build concrete arrays, not tracers, for the cache.
    with jax.ensure_compile_time_eval():
        return mjx.put_model(tuned_model(*args), impl="jax")


@functools.lru_cache(maxsize=None)
def _template_data(*args) -> mjx.Data:
    with jax.ensure_compile_time_eval():
        return mjx.make_data(tuned_model(*args), impl="jax")


@struct.dataclass
class PhysState:
    """The part of ``mjx.Data`` that carries over between env steps: [nq], [nv], [nv] float32.

    Everything else in ``mjx.Data`` (kinematics, contacts, constraint rows, ...) is recomputed by
    ``mjx.step`` from these, so carrying the full ``mjx.Data`` through scans, the replay of
    start states and ``jnp.where`` at sub-episode boundaries would only move memory.
    """

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array


class MjxEnv(Env):
    """Shared MJX plumbing. Subclasses set ``xml_name``, ``frame_skip`` and the option fields."""

    xml_name: ClassVar[str] = ""
    frame_skip: ClassVar[int] = 1

    # Subclasses define these as dataclass fields.
    solver_iterations: int
    ls_iterations: int
    eulerdamp: bool

    def _collide_geoms(self) -> Tuple[str, ...] | None:
        return None

    def _solver_integrator(self) -> Tuple[str | None, str | None]:
        """(solver, integrator) overrides for ``tuned_model``; (None, None) keeps the XML's."""
        return None, None

    def _model_key(self) -> tuple:
        return (
            self.xml_name,
            int(self.solver_iterations),
            int(self.ls_iterations),
            bool(self.eulerdamp),
            self._collide_geoms(),
            *self._solver_integrator(),
        )

    @property
    def mj_model(self) -> mujoco.MjModel:
        """The tuned native model (what MJX simulates), e.g. for rendering or native stepping."""
        return tuned_model(*self._model_key())

    @property
    def reference_mj_model(self) -> mujoco.MjModel:
        """The untuned model from the XML file, the ground truth for tests."""
        return reference_model(self.xml_name)

    @property
    def mjx_model(self) -> mjx.Model:
        return _put(*self._model_key())

    @property
    def dt(self) -> float:
        """Seconds of simulated time per env step."""
        return float(self.mj_model.opt.timestep) * self.frame_skip

    def _init_phys(self, qpos: jax.Array, qvel: jax.Array) -> PhysState:
        return PhysState(
            qpos=qpos.astype(jnp.float32),
            qvel=qvel.astype(jnp.float32),
            qacc_warmstart=jnp.zeros_like(qvel, jnp.float32),
        )

    def _data(self, phys: PhysState) -> mjx.Data:
        """A full ``mjx.Data`` for ``phys`` (derived quantities not yet computed)."""
        data = _template_data(*self._model_key())
        return data.replace(qpos=phys.qpos, qvel=phys.qvel, qacc_warmstart=phys.qacc_warmstart)

    def _physics_step(self, phys: PhysState, ctrl: jax.Array) -> tuple[PhysState, mjx.Data]:
        """``frame_skip`` MJX steps with a held control (clamped to ctrlrange by MuJoCo)."""
        model = self.mjx_model
        data = self._data(phys)
        data = data.replace(ctrl=ctrl.astype(data.ctrl.dtype))
        data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(model, d), data)
        return PhysState(data.qpos, data.qvel, data.qacc_warmstart), data

    @staticmethod
    def _diverged(data) -> jax.Array:
        return ~(jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel)))


# ----------------------------------------------------------------------------------------------
# Reacher-N (spec 10.5)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ReacherGoal(MjxEnv):
    """Reacher-N: a two-link planar arm must visit ``num_goals`` hidden goals in order.

    Task: ``goals`` [N, 2], each uniform by area in a disc of radius 0.195 m around the base.
    Obs (4,): fingertip (x, y) after the step, joint velocities (shoulder, wrist).
    Reward: max(0, 1 - d/0.05) - 0.01 * ||u||^2 with d the fingertip distance to the current goal
    and u the raw action; after the reward, if d < 0.05 and the goal is not the last, the goal
    index advances. Reset: shoulder ~ U[-pi, pi], wrist ~ U[-160, 160] deg, zero velocities,
    goal index 0. (The official code carries joint velocities over at sub-episode boundaries;
    we start every sub-episode at rest.)

    Defaults K=3, H=200 follow the paper's GIFs; the official config is K=1, H=300.
    """

    name: ClassVar[str] = "reacher_goal"
    obs_dim: ClassVar[int] = 4
    action_dim: ClassVar[int] = 2
    discrete: ClassVar[bool] = False
    default_K: ClassVar[int] = 3
    default_H: ClassVar[int] = 200
    xml_name: ClassVar[str] = "reacher.xml"
    frame_skip: ClassVar[int] = 1

    num_goals: int = 2
    goal_radius: float = 0.05  # reward/advance radius
    goal_disc_radius: float = 3 * 0.065  # HyperX disc of goals, 0.195 m
    ctrl_cost: float = 0.01
    # The only constraint is the wrist limit (contacts are off): 2 Newton iterations suffice.
    solver_iterations: int = 2
    ls_iterations: int = 4
    eulerdamp: bool = True  # damping 0.01 on a ~1e-3 kg m^2 arm: implicit damping matters.

    def sample_task(self, key: jax.Array) -> dict:
        k_angle, k_radius = jax.random.split(key)
        angle = jax.random.uniform(k_angle, (self.num_goals,), maxval=2 * jnp.pi)
        radius = self.goal_disc_radius * jnp.sqrt(jax.random.uniform(k_radius, (self.num_goals,)))
        goals = jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)
        return {"goals": goals.astype(jnp.float32)}

    def _fingertip(self, data: mjx.Data) -> jax.Array:
        return data.xpos[self.mj_model.body("fingertip").id, :2]

    def _obs(self, data: mjx.Data) -> jax.Array:
        obs = jnp.concatenate([self._fingertip(data), data.qvel])
        return jnp.nan_to_num(obs).astype(jnp.float32)

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        key, k_sh, k_wr = jax.random.split(key, 3)
        lo, hi = self.mj_model.jnt_range[self.mj_model.joint("wrist").id]
        qpos = jnp.stack([
            jax.random.uniform(k_sh, (), minval=-jnp.pi, maxval=jnp.pi),
            jax.random.uniform(k_wr, (), minval=float(lo), maxval=float(hi)),
        ])
        phys = self._init_phys(qpos, jnp.zeros(2))
        data = mjx.kinematics(self.mjx_model, self._data(phys))
        inner = {"data": phys, "goal_idx": jnp.zeros((), jnp.int32)}
        return EnvState(
            obs=self._obs(data),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), bool),
            task=task,
            inner=inner,
            key=key,
        )

    def reward(self, fingertip: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """Sparse reward for one step; exposed for tests."""
        d = jnp.linalg.norm(fingertip - goal)
        return jnp.maximum(0.0, 1.0 - d / self.goal_radius) - self.ctrl_cost * jnp.sum(action**2)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = self.check_action(action)
        phys, data = self._physics_step(state.inner["data"], action)
        # mjx.step leaves positions at the start of the step: refresh them for the observation.
        data = mjx.kinematics(self.mjx_model, data)
        goals = state.task["goals"]
        idx = state.inner["goal_idx"]
        tip = self._fingertip(data)
        reward = self.reward(tip, goals[idx], action)
        reached = jnp.linalg.norm(tip - goals[idx]) < self.goal_radius
        idx = jnp.where(reached & (idx < self.num_goals - 1), idx + 1, idx)
        return EnvState(
            obs=self._obs(data),
            reward=jnp.nan_to_num(reward).astype(jnp.float32),
            done=self._diverged(phys),
            task=state.task,
            inner={"data": phys, "goal_idx": idx},
            key=state.key,
        )


# ----------------------------------------------------------------------------------------------
# HalfCheetah-Vel / -Dir (spec 10.8, VariBAD definitions)
# ----------------------------------------------------------------------------------------------
CHEETAH_FEET = ("bfoot", "ffoot")
CHEETAH_ALL = ("torso", "head", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")


@dataclasses.dataclass(frozen=True)
class _Cheetah(MjxEnv):
    """Planar half-cheetah, 5 physics steps of 0.01 s per env step (dt = 0.05 s).

    Obs (17,): qpos[1:] (8), qvel (9). VariBAD appends the torso position (x, y, z); we leave it
    out: z is qpos[1] already, y is always 0, and x grows without bound and carries no task
    information (the task is a velocity or a direction).
    Reset (every sub-episode): qpos ~ U(-0.1, 0.1), qvel ~ 0.1 * N(0, 1), as gym/VariBAD.
    ``contacts``: 'all' = every body geom against the floor (the model as written),
    'feet' = only the two feet (default; see the module docstring and bench_mjx.py for the cost),
    'lower' = feet, shins, head and torso (the geoms a flipped or stumbling cheetah lands on).
    """

    obs_dim: ClassVar[int] = 17
    action_dim: ClassVar[int] = 6
    discrete: ClassVar[bool] = False
    default_K: ClassVar[int] = 2
    default_H: ClassVar[int] = 200
    xml_name: ClassVar[str] = "half_cheetah.xml"
    frame_skip: ClassVar[int] = 5

    ctrl_cost: float = 0.05
    contacts: str = "feet"
    # 3/2: as close to native MuJoCo as 4/8 over 16 random rollouts (module docstring), ~1.9x faster
    solver_iterations: int = 3
    ls_iterations: int = 2
    eulerdamp: bool = True

    def _collide_geoms(self) -> Tuple[str, ...] | None:
        choices = {
            "all": None,
            "feet": CHEETAH_FEET,
            "lower": CHEETAH_FEET + ("bshin", "fshin", "head", "torso"),
        }
        if self.contacts not in choices:
            raise ValueError(f"contacts must be one of {sorted(choices)}, got {self.contacts!r}")
        return choices[self.contacts]

    def _obs(self, phys: PhysState) -> jax.Array:
        return jnp.nan_to_num(jnp.concatenate([phys.qpos[1:], phys.qvel])).astype(jnp.float32)

    def reset(self, key: jax.Array, task: dict) -> EnvState:
        key, k_pos, k_vel = jax.random.split(key, 3)
        m = self.mj_model
        qpos = jnp.asarray(m.qpos0) + jax.random.uniform(k_pos, (m.nq,), minval=-0.1, maxval=0.1)
        qvel = 0.1 * jax.random.normal(k_vel, (m.nv,))
        phys = self._init_phys(qpos, qvel)
        return EnvState(
            obs=self._obs(phys),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), bool),
            task=task,
            inner=phys,
            key=key,
        )

    def task_reward(self, forward_vel: jax.Array, task: dict) -> jax.Array:
        raise NotImplementedError

    def reward(self, forward_vel: jax.Array, action: jax.Array, task: dict) -> jax.Array:
        """Reward for one step; exposed for tests."""
        return self.task_reward(forward_vel, task) - self.ctrl_cost * jnp.sum(action**2)

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = self.check_action(action)
        x_before = state.inner.qpos[0]
        phys, _ = self._physics_step(state.inner, action)
        forward_vel = (phys.qpos[0] - x_before) / self.dt
        reward = self.reward(forward_vel, action, state.task)
        return EnvState(
            obs=self._obs(phys),
            reward=jnp.nan_to_num(reward).astype(jnp.float32),
            done=self._diverged(phys),
            task=state.task,
            inner=phys,
            key=state.key,
        )


@dataclasses.dataclass(frozen=True)
class CheetahVel(_Cheetah):
    """HalfCheetah-Vel: reward -|v_x - v_goal| - 0.05 ||a||^2, v_goal ~ U[0, 3] per task.

    K=2, H=200 by default (VariBAD's registration uses 200-step episodes for Dir and 100 for
    Vel; we use 200 for both so the two variants share a budget).
    """

    name: ClassVar[str] = "cheetah_vel"
    max_vel: float = 3.0

    def sample_task(self, key: jax.Array) -> dict:
        return {"goal_vel": jax.random.uniform(key, (), maxval=self.max_vel)}

    def task_reward(self, forward_vel: jax.Array, task: dict) -> jax.Array:
        return -jnp.abs(forward_vel - task["goal_vel"])


@dataclasses.dataclass(frozen=True)
class CheetahDir(_Cheetah):
    """HalfCheetah-Dir: reward dir * v_x - 0.05 ||a||^2, dir in {-1, +1}. K=2, H=200."""

    name: ClassVar[str] = "cheetah_dir"

    def sample_task(self, key: jax.Array) -> dict:
        return {"direction": jnp.where(jax.random.bernoulli(key), 1.0, -1.0).astype(jnp.float32)}

    def task_reward(self, forward_vel: jax.Array, task: dict) -> jax.Array:
        return task["direction"] * forward_vel


# ----------------------------------------------------------------------------------------------
# Humanoid-Dir (spec 10.6, gym HumanoidEnv with a 2D direction task)
# ----------------------------------------------------------------------------------------------
HUMANOID_FEET = ("left_foot", "right_foot")
HUMANOID_ALL = (
    "torso1", "head", "uwaist", "lwaist", "butt", "right_thigh1", "right_shin1", "right_foot",
    "left_thigh1", "left_shin1", "left_foot", "right_uarm1", "right_larm", "right_hand",
    "left_uarm1", "left_larm", "left_hand",
)


def mass_center_xy(body_mass: jax.Array, xipos: jax.Array) -> jax.Array:
    """gym's ``mass_center``, xy part: sum(m_b * xipos_b) / sum(m_b). [nbody], [nbody, 3] -> [2]."""
    return (jnp.sum(body_mass[:, None] * xipos, axis=0) / jnp.sum(body_mass))[:2]


@dataclasses.dataclass(frozen=True)
class HumanoidDir(MjxEnv):
    """Humanoid-Dir: gym's 3D humanoid must walk in a hidden direction th ~ U[0, 2 pi).

    Physics: ``envs/assets/humanoid.xml`` (gym's Humanoid: free root + 17 hinges, nq=24, nv=23,
    14 bodies with the world), 5 physics steps of 0.003 s per env step (dt = 0.015 s).
    Action (17,) in [-1, 1]; ctrl = 0.4 * action (gym's bound; the motors' ctrlrange is +-0.4).
    Obs (376,), gym's layout, read after the step:
        qpos[2:] (22) | qvel (23) | cinert (14 x 10 = 140) | cvel (14 x 6 = 84) |
        qfrc_actuator (23) | cfrc_ext (14 x 6 = 84)
    (all 14 bodies, the world's zero rows included). As with gym's ``mj_step``, qpos/qvel are
    post-integration and the other fields come from the forward pass of the last physics step.
    cfrc_ext (external contact wrench per body) is computed with ``mjx.rne_postconstraint``
    (MuJoCo's ``mj_rnePostConstraint``), once per env step, as MuJoCo 1.50 (the spec's version)
    did inside every ``mj_forward``. MuJoCo >= 2.0 only runs it when a sensor needs it, which is
    why gym Humanoid on mujoco-py 2.x sees cfrc_ext = 0 (checked with native MuJoCo 4.0 on our
    model: all zero after ``mj_step``; after ``mj_rnePostConstraint`` non-zero on the contact
    steps, contact cost per step mean 0.13, p99 2.3, max 6.1 over 200 random-action episodes).
    Reward: 0.25 * ((com_after - com_before) . (cos th, sin th)) / 0.003 - 0.1 ||ctrl||^2
        - min(10, 5e-7 ||cfrc_ext||^2) + 5, com = mass-weighted xy centre of the bodies' ``xipos``
    (gym's ``mass_center``). com_before is carried in the state (the com the previous step or
    the reset computed), so the velocity term telescopes exactly as in gym. The division by the
    physics timestep (not dt) is kept for comparability with VariBAD/PEARL (spec 10.6).
    Termination: ``done`` when the torso height qpos[2] leaves [1, 2] (or the state diverges);
    ``envs.meta.MetaEpisode`` then starts the next sub-episode.
    Reset: qpos0 + U(-0.01, 0.01) on every qpos entry (the root quaternion included, as gym),
    qvel ~ U(-0.01, 0.01); the first observation comes from a full forward pass (``mjx.forward``)
    with ctrl = 0, as gym's ``set_state``. MJX's forward pass normalises the noisy root quaternion
    in qpos (native MuJoCo only normalises it when integrating), so the state and the first
    observation carry the unit quaternion where gym's first observation has the raw one
    (|q| = 1 +- 0.01).
    K=2, H=200 (spec 9.2).

    Solver (see the module docstring): MJX has no PGS, so the tuned model uses Newton with
    ``solver_iterations`` / ``ls_iterations`` (4/8; natively against a converged Newton solve over
    15 env steps: 4/8 within 4e-3 rad, 3/6 6e-3, 2/4 and 1/4 0.04-0.45, 4/8 without implicit
    damping 0.13) and, by default, the semi-implicit Euler integrator instead of the XML's RK4
    (``integrator='rk4'`` reproduces the reference to ~1e-5 at ~6x the cost).
    ``contacts``: 'feet' (default; 2 contact slots, 25 constraint rows with the 17 joint limits)
    = only the two feet against the floor, as brax/mujoco_playground do for this humanoid;
    'floor' = every body geom against the floor, no self-collisions (29 slots); 'all' = the model
    as written, gym's set (138 slots, 242 rows). 'feet' drops gym's frictionless self-collisions
    (foot-foot, butt-foot, thigh-thigh, arm-waist, ...: in ~9% of random-action steps) and their
    share of cfrc_ext; no other body part touched the floor before termination in 200 native
    random-action episodes (4.7k steps), and over those episodes the mean episode length (23.8)
    and contact cost (0.13 vs 0.13 per step) did not change when self-collisions were removed.
    """

    name: ClassVar[str] = "humanoid_dir"
    obs_dim: ClassVar[int] = 376
    action_dim: ClassVar[int] = 17
    discrete: ClassVar[bool] = False
    default_K: ClassVar[int] = 2
    default_H: ClassVar[int] = 200
    xml_name: ClassVar[str] = "humanoid.xml"
    frame_skip: ClassVar[int] = 5

    action_scale: float = 0.4
    forward_weight: float = 0.25
    ctrl_cost: float = 0.1
    contact_cost: float = 5e-7
    contact_cost_max: float = 10.0
    alive_bonus: float = 5.0
    healthy_z_min: float = 1.0
    healthy_z_max: float = 2.0
    reset_noise: float = 0.01
    contacts: str = "feet"
    solver: str = "newton"
    integrator: str = "euler"
    solver_iterations: int = 4
    ls_iterations: int = 8
    eulerdamp: bool = True

    def _collide_geoms(self) -> Tuple[str, ...] | None:
        choices = {"all": None, "feet": HUMANOID_FEET, "floor": HUMANOID_ALL}
        if self.contacts not in choices:
            raise ValueError(f"contacts must be one of {sorted(choices)}, got {self.contacts!r}")
        return choices[self.contacts]

    def _solver_integrator(self) -> Tuple[str | None, str | None]:
        return self.solver, self.integrator

    def sample_task(self, key: jax.Array) -> dict:
        return {"theta": jax.random.uniform(key, (), jnp.float32, 0.0, 2 * jnp.pi)}

    # -- pieces of the observation and reward (pure functions of mjx.Data) ----------------------
    def _com_xy(self, data: mjx.Data) -> jax.Array:
        """[2] mass-weighted xy centre of the bodies (from ``data.xipos``)."""
        return mass_center_xy(jnp.asarray(self.mj_model.body_mass, jnp.float32), data.xipos)

    def _cfrc_ext(self, data: mjx.Data) -> jax.Array:
        """[nbody, 6] external (contact) wrench on each body, MuJoCo's ``cfrc_ext``."""
        return mjx.rne_postconstraint(self.mjx_model, data)._impl.cfrc_ext

    def _obs(self, data: mjx.Data, cfrc_ext: jax.Array) -> jax.Array:
        """[376] gym's Humanoid observation (see the class docstring)."""
        obs = jnp.concatenate([
            data.qpos[2:],
            data.qvel,
            data._impl.cinert.ravel(),
            data.cvel.ravel(),
            data.qfrc_actuator,
            cfrc_ext.ravel(),
        ])
        return jnp.nan_to_num(obs).astype(jnp.float32)

    def healthy(self, torso_z: jax.Array) -> jax.Array:
        """[] bool: the torso height is inside [healthy_z_min, healthy_z_max]."""
        return (torso_z >= self.healthy_z_min) & (torso_z <= self.healthy_z_max)

    def reward(self, com_before: jax.Array, com_after: jax.Array, ctrl: jax.Array,
               cfrc_ext: jax.Array, task: dict) -> jax.Array:
        """Reward for one step; exposed for tests. com_* [2], ctrl [17], cfrc_ext [nbody, 6]."""
        direction = jnp.stack([jnp.cos(task["theta"]), jnp.sin(task["theta"])])
        timestep = float(self.mj_model.opt.timestep)
        progress = self.forward_weight * jnp.dot(com_after - com_before, direction) / timestep
        ctrl_cost = self.ctrl_cost * jnp.sum(ctrl**2)
        contact_cost = jnp.minimum(self.contact_cost * jnp.sum(cfrc_ext**2), self.contact_cost_max)
        return progress - ctrl_cost - contact_cost + self.alive_bonus

    # -- Env API ----------------------------------------------------------------------------------
    def reset(self, key: jax.Array, task: dict) -> EnvState:
        key, k_pos, k_vel = jax.random.split(key, 3)
        m, c = self.mj_model, self.reset_noise
        qpos = jnp.asarray(m.qpos0) + jax.random.uniform(k_pos, (m.nq,), minval=-c, maxval=c)
        qvel = jax.random.uniform(k_vel, (m.nv,), minval=-c, maxval=c)
        phys = self._init_phys(qpos, qvel)
        data = mjx.forward(self.mjx_model, self._data(phys))  # ctrl = 0 in the template
        # MJX's kinematics normalises the root quaternion in data.qpos; carry that one.
        phys = phys.replace(qpos=data.qpos)
        return EnvState(
            obs=self._obs(data, self._cfrc_ext(data)),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), bool),
            task=task,
            inner={"data": phys, "com_xy": self._com_xy(data)},
            key=key,
        )

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        action = self.check_action(action)
        ctrl = self.action_scale * action
        phys, data = self._physics_step(state.inner["data"], ctrl)
        cfrc_ext = self._cfrc_ext(data)
        com_xy = self._com_xy(data)
        reward = self.reward(state.inner["com_xy"], com_xy, ctrl, cfrc_ext, state.task)
        done = ~self.healthy(phys.qpos[2]) | self._diverged(phys)
        return EnvState(
            obs=self._obs(data, cfrc_ext),
            reward=jnp.nan_to_num(reward).astype(jnp.float32),
            done=done,
            task=state.task,
            inner={"data": phys, "com_xy": com_xy},
            key=state.key,
        )


register("reacher_goal", ReacherGoal)
register("cheetah_vel", CheetahVel)
register("cheetah_dir", CheetahDir)
register("humanoid_dir", HumanoidDir)
