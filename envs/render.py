"""2-D pictures of one meta-episode (cf. the paper's Figure 1): one colour per sub-episode.

``render_meta_episode(env, positions [T, 2], sub_idx [T], task, path)`` draws the xy path of every
sub-episode (red, green, blue, ...) over the task's geometry:
  * point robot (and wind): the goal disc and the half circle of possible goals;
  * escape room: the wall circle with the door arc highlighted;
  * rooms: the grid cells of rooms and corridors, the start cell and the goal cells (numbered).
Positions are plane/grid coordinates: use ``env.positions(obs['state'])`` to get them from
observations (for rooms this undoes the observation normalisation).

Because of the boundary quirk (spec 3.2) the start state of sub-episodes 2..K is not observed;
pass ``starts`` (one [2] point per sub-episode) to draw each sub-episode from its start.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patches  # noqa: E402

from envs.core import Env, make  # noqa: E402

SUB_EPISODE_COLOURS = ("red", "green", "blue", "orange", "purple", "brown", "magenta", "olive",
                       "cyan", "grey")


def _draw_point_robot(ax, env, task):
    goal = np.asarray(task["goal"], np.float64)
    th = np.linspace(0.0, math.pi, 200)
    ax.plot(np.cos(th), np.sin(th), color="0.8", lw=1, ls="--", zorder=0)
    ax.add_patch(patches.Circle(goal, env.goal_radius, color="gold", alpha=0.5, zorder=1))
    ax.plot(*goal, marker="*", color="darkgoldenrod", ms=10, zorder=2)
    ax.set_xlim(-1.4, 1.4)
    ax.set_ylim(-0.6, 1.4)


def _draw_escape_room(ax, env, task):
    th = np.linspace(-math.pi, math.pi, 400)
    ax.plot(np.cos(th), np.sin(th), color="black", lw=2, zorder=1)
    phi = float(np.asarray(task["door"]))
    half = env.door_width / 2
    door = np.linspace(phi - half, phi + half, 50)
    ax.plot(np.cos(door), np.sin(door), color="limegreen", lw=5, zorder=2)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)


def _draw_rooms(ax, env, task):
    for x in range(env.width):
        ys = (0,) if x % 6 >= 3 else (-1, 0, 1)
        for y in ys:
            ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="0.93",
                                           edgecolor="0.6", lw=0.8, zorder=0))
    ax.add_patch(patches.Rectangle((-0.5, -0.5), 1, 1, facecolor="lightblue", edgecolor="0.6",
                                   zorder=0))
    for i, (gx, gy) in enumerate(np.asarray(task["goals"]).tolist()):
        ax.add_patch(patches.Rectangle((gx - 0.5, gy - 0.5), 1, 1, facecolor="gold",
                                       edgecolor="0.6", zorder=0))
        ax.text(gx, gy, str(i), ha="center", va="center", fontsize=8, zorder=3)
    ax.set_xlim(-1, env.width)
    ax.set_ylim(-2, 2)


def _draw_geometry(ax, env, task):
    name = env.name
    if name.startswith("point_robot"):
        _draw_point_robot(ax, env, task)
    elif name == "escape_room":
        _draw_escape_room(ax, env, task)
    elif name == "rooms":
        _draw_rooms(ax, env, task)
    # Other tasks: only the path is drawn.


def draw_meta_episode(ax, env: Env, positions, sub_idx, task, starts: Optional[Sequence] = None,
                      legend: bool = True) -> None:
    """Draws the task geometry and one meta-episode's path on a matplotlib axis, one colour per
    sub-episode (red, green, blue, as in the paper's Figure 1). positions [T, 2], sub_idx [T]."""
    positions = np.asarray(positions, np.float64)
    sub_idx = np.asarray(sub_idx).astype(int)
    _draw_geometry(ax, env, task)
    for k in np.unique(sub_idx):
        xy = positions[sub_idx == k]
        if starts is not None and k < len(starts):
            xy = np.concatenate([np.asarray(starts[k], np.float64)[None], xy])
        colour = SUB_EPISODE_COLOURS[k % len(SUB_EPISODE_COLOURS)]
        ax.plot(xy[:, 0], xy[:, 1], "-o", color=colour, ms=2, lw=1.2, alpha=0.8,
                label=f"sub-episode {k + 1}", zorder=4)
        ax.plot(*xy[0], marker="s", color=colour, ms=5, zorder=5)
    # widen the task's default view where the path leaves it
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    pad = 0.1
    ax.set_xlim(min(x0, positions[:, 0].min() - pad), max(x1, positions[:, 0].max() + pad))
    ax.set_ylim(min(y0, positions[:, 1].min() - pad), max(y1, positions[:, 1].max() + pad))
    ax.set_aspect("equal")
    if legend:
        ax.legend(loc="upper right", fontsize=7)


def render_meta_episode(
    env: Union[str, Env],
    positions,
    sub_idx,
    task,
    path: str,
    title: Optional[str] = None,
    starts: Optional[Sequence] = None,
) -> str:
    """Writes a PNG of one meta-episode and returns ``path``.

    Args:
        env: an ``Env`` or a registered name.
        positions: [T, 2] xy of each observed step (plane or grid coordinates).
        sub_idx: [T] int sub-episode index of each step (``MetaState.sub_idx``).
        task: the task pytree (numpy or JAX arrays, no batch axis).
        path: output file (.png); parent folders are created.
        title: optional figure title.
        starts: optional [K, 2] start point of each sub-episode, prepended to its path.
    """
    if isinstance(env, str):
        env = make(env)
    positions = np.asarray(positions, np.float64)
    sub_idx = np.asarray(sub_idx).astype(int)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions must have shape [T, 2], got {positions.shape}")
    if sub_idx.shape != positions.shape[:1]:
        raise ValueError(f"sub_idx must have shape [{positions.shape[0]}], got {sub_idx.shape}")

    fig, ax = plt.subplots(figsize=(8, 3) if env.name == "rooms" else (5, 5))
    draw_meta_episode(ax, env, positions, sub_idx, task, starts=starts)
    if title:
        ax.set_title(title)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
