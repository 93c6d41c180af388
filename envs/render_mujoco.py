"""Frames of a MuJoCo task rollout, written as a GIF (Pillow) or MP4 (imageio, if installed).

``render_rollout(env, states, path, fps)`` replays a sequence of physics states with the native
``mujoco.Renderer`` (headless: MUJOCO_GL=egl, see envs/assets/SYSTEM_DEPS.txt). ``states`` is one
of:

* an array of qpos [T, nq];
* a time-stacked ``EnvState`` (e.g. the output of a ``lax.scan`` over ``env.step``);
* a time-stacked ``MetaState`` from ``envs.meta.MetaEpisode``.

Reacher goals are drawn as translucent discs (the current goal brighter) when ``task`` is given or
can be read from the states; they are not part of the model, as in the official task.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
    os.environ.setdefault("MUJOCO_GL", "egl")  # must precede the first `import mujoco`

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

GOAL_RGBA = ((1.0, 0.85, 0.1, 0.35), (1.0, 0.85, 0.1, 0.8))  # other goals, current goal


def _qpos_and_goal_idx(states: Any):
    """Returns (qpos [T, nq], goal_idx [T] or None, task or None) from a supported input."""
    if hasattr(states, "env_state"):  # MetaState
        states = states.env_state
    if hasattr(states, "inner"):  # EnvState
        inner = states.inner
        task = states.task
        if isinstance(inner, dict):
            return np.asarray(inner["data"].qpos), np.asarray(inner.get("goal_idx")), task
        return np.asarray(inner.qpos), None, task
    qpos = np.asarray(states)
    if qpos.ndim != 2:
        raise ValueError(f"qpos sequence must be [T, nq], got shape {qpos.shape}")
    return qpos, None, None


def _add_goal_markers(scene: mujoco.MjvScene, goals: np.ndarray, current: Optional[int],
                      radius: float) -> None:
    for i, goal in enumerate(goals):
        if scene.ngeom >= scene.maxgeom:
            return
        rgba = GOAL_RGBA[1] if current is not None and i == current else GOAL_RGBA[0]
        mujoco.mjv_initGeom(
            scene.geoms[scene.ngeom],
            type=int(mujoco.mjtGeom.mjGEOM_CYLINDER),
            size=np.array([radius, 0.002, 0.0]),
            pos=np.array([goal[0], goal[1], 0.002]),
            mat=np.eye(3).flatten(),
            rgba=np.array(rgba, np.float32),
        )
        scene.ngeom += 1


def render_frames(env, states: Any, width: int = 320, height: int = 240,
                  camera: Optional[str] = None, task: Any = None) -> list[np.ndarray]:
    """Renders every state of the sequence; returns a list of [height, width, 3] uint8 frames."""
    qpos, goal_idx, state_task = _qpos_and_goal_idx(states)
    task = task if task is not None else state_task
    model = env.mj_model
    if qpos.shape[-1] != model.nq:
        raise ValueError(f"qpos has {qpos.shape[-1]} entries, the model has nq={model.nq}")
    goals = None
    if task is not None and isinstance(task, dict) and "goals" in task:
        goals = np.asarray(task["goals"])
        goals = goals.reshape((-1,) + goals.shape[-2:])[0]  # a time-stacked task repeats itself
    if camera is None:
        camera = {"reacher_goal": "top_down", "cheetah_vel": "side", "cheetah_dir": "side",
                  "humanoid_dir": "track"}.get(env.name, -1)
    data = mujoco.MjData(model)
    frames = []
    with mujoco.Renderer(model, height=height, width=width) as renderer:
        for t, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            if goals is not None:
                current = None if goal_idx is None or goal_idx.ndim == 0 else int(goal_idx[t])
                _add_goal_markers(renderer.scene, goals, current, getattr(env, "goal_radius", 0.05))
            frames.append(renderer.render().copy())
    return frames


def write_video(frames: Sequence[np.ndarray], path: str, fps: float = 20) -> str:
    """Writes frames to ``path``: .gif with Pillow, .mp4 with imageio (pip install imageio[ffmpeg])."""
    if not frames:
        raise ValueError("no frames to write")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.lower().endswith(".mp4"):
        try:
            import imageio.v3 as iio
        except ImportError as err:
            raise ImportError("MP4 output needs imageio[ffmpeg]; write a .gif instead") from err
        iio.imwrite(path, np.stack(frames), fps=fps)
        return path
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], loop=0,
                   duration=max(1, round(1000 / fps)), optimize=False)
    return path


def render_rollout(env, states: Any, path: str, fps: float = 20, width: int = 320,
                   height: int = 240, camera: Optional[str] = None, task: Any = None) -> str:
    """Renders a rollout of an MJX task (qpos [T, nq], EnvState or MetaState stacked over T).

    Returns ``path``. Raises RuntimeError (from MuJoCo) when no OpenGL backend is available.
    """
    frames = render_frames(env, states, width=width, height=height, camera=camera, task=task)
    return write_video(frames, path, fps)


def rendering_available() -> tuple[bool, str]:
    """(True, '') when a headless mujoco.Renderer can be created, else (False, reason)."""
    try:
        model = mujoco.MjModel.from_xml_string("<mujoco><worldbody/></mujoco>")
        with mujoco.Renderer(model, height=8, width=8) as renderer:
            renderer.update_scene(mujoco.MjData(model))
            renderer.render()
    except Exception as err:  # noqa: BLE001 - any GL failure means "not available"
        return False, (f"mujoco.Renderer failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                       f"{type(err).__name__}: {err}. See envs/assets/SYSTEM_DEPS.txt")
    return True, ""
