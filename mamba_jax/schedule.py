"""Frame-driven schedules of the training loop (MAMBA spec sections 5.2, 7.3, 7.4)."""
from __future__ import annotations

import jax.numpy as jnp


def logger_frames(real_frames, prefill_frames, legacy_double_count: bool):
    """The official logger's frame count: collected frames after prefill are counted twice."""
    if not legacy_double_count:
        return real_frames
    return real_frames + jnp.maximum(real_frames - prefill_frames, 0)


def wm_horizon(frames, length: int, initial: int, reach_frames: float):
    """World-model horizon used by the next update (spec 5.2); int32 [].

    ``min(length, ceil(initial + frames * (length - initial) / reach_frames))``; constant
    ``length`` when ``initial >= length`` or ``reach_frames <= 0`` (no schedule).
    """
    if initial >= length or reach_frames <= 0:
        return jnp.asarray(length, jnp.int32)
    frames = jnp.asarray(frames, jnp.float32)
    value = jnp.ceil(initial + frames * (length - initial) / reach_frames)
    return jnp.clip(value, 1, length).astype(jnp.int32)


def updates_per_round(train_ratio: float, num_envs: int, H: int) -> int:
    """MAMBA's train ratio: ``int(train_ratio * steps_collected / K)`` updates per round of
    ``num_envs`` meta-episodes, i.e. ``train_ratio * num_envs * H`` (spec 7.3)."""
    return int(round(train_ratio * num_envs * H, 6))
