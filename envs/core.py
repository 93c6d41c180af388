"""The functional environment API shared by every task.

An environment is a frozen (hashable, static) Python object with pure methods over pytrees:

    task  = env.sample_task(key)          # pytree of arrays, fixed for a meta-episode
    state = env.reset(key, task)          # EnvState; state.obs is the first observation
    state = env.step(state, action)       # EnvState after one step

Everything is jit/vmap/scan friendly: static shapes, no Python side effects. Stochastic dynamics
draw from ``state.key``, which ``step`` splits and carries forward.

Shapes (single environment, no batch axis):
    obs    [obs_dim] float32
    action [action_dim] float32 (continuous, in [-1, 1]) or [num_actions] one-hot (discrete)
    reward [] float32, done [] bool (True only when the base task terminates early, e.g. a fall)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Set

import jax
import jax.numpy as jnp
from flax import struct

PyTree = Any


@struct.dataclass
class EnvState:
    """State of one base environment. ``inner`` holds task-specific physics state."""

    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    task: PyTree
    inner: PyTree
    key: jax.Array


class Env:
    """Base class: subclasses are frozen dataclasses implementing the three pure methods.

    Class attributes every task sets:
        name: registry name.
        obs_dim: size of the observation vector.
        action_dim: size of the action vector (number of actions for discrete tasks).
        discrete: True when actions are one-hot over ``action_dim`` choices.
        default_K, default_H: sub-episodes per meta-episode and steps per sub-episode.
    """

    name: str = "base"
    obs_dim: int = 0
    action_dim: int = 0
    discrete: bool = False
    default_K: int = 1
    default_H: int = 1

    def sample_task(self, key: jax.Array) -> PyTree:
        raise NotImplementedError

    def reset(self, key: jax.Array, task: PyTree) -> EnvState:
        raise NotImplementedError

    def step(self, state: EnvState, action: jax.Array) -> EnvState:
        raise NotImplementedError

    # -- helpers shared by tasks -------------------------------------------------------------
    def check_action(self, action: jax.Array) -> jax.Array:
        """Validates the action's shape at trace time; returns it as float32."""
        action = jnp.asarray(action)
        if action.shape != (self.action_dim,):
            raise ValueError(
                f"{self.name}: action must have shape ({self.action_dim},), got {action.shape}. "
                "Use jax.vmap for batches."
            )
        return action.astype(jnp.float32)


_REGISTRY: Dict[str, Callable[..., Env]] = {}


def register(name: str, factory: Callable[..., Env]) -> None:
    """Registers ``factory(**overrides) -> Env`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = factory


def registered_names() -> list[str]:
    return sorted(_REGISTRY)


_SIMPLE = (bool, int, float, str)


def options(name: str) -> Dict[str, Any]:
    """Constructor options of a registered environment and their defaults, e.g.
    ``options('point_robot') == {'goal_radius': 0.2}``: the fields a config's ``env_kwargs`` may
    set (options without a plain bool/int/float/str default are left out).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown environment {name!r}; valid names: {', '.join(registered_names())}"
        )
    factory = _REGISTRY[name]
    if not dataclasses.is_dataclass(factory):
        return {}
    return {f.name: f.default for f in dataclasses.fields(factory)
            if f.init and isinstance(f.default, _SIMPLE)}


def option_names(name: str) -> Optional[Set[str]]:
    """Every option ``make(name, ...)`` accepts, or None when the factory is not a dataclass (its
    options cannot be listed). Raises ValueError for an unknown name."""
    options(name)  # the unknown-name error
    factory = _REGISTRY[name]
    if not dataclasses.is_dataclass(factory):
        return None
    return {f.name for f in dataclasses.fields(factory) if f.init}


def check_options(name: str, overrides: Dict[str, Any]) -> None:
    """Raises ValueError naming every key of ``overrides`` that ``make(name, ...)`` does not
    accept (and the unknown-name error). Factories that are not dataclasses are not checked."""
    valid = option_names(name)
    bad = sorted(set(overrides) - valid) if valid is not None else []
    if bad:
        raise ValueError(f"{name!r} has no option(s) {bad}; valid options: {sorted(valid)} "
                         f"(defaults: {options(name)})")


def resolve_options(name: str, overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Every option of environment ``name`` as ``make(name, **overrides)`` would use it: the
    defaults updated by ``overrides`` (sorted by name). Unknown names resolve to ``overrides``."""
    base = options(name) if name in _REGISTRY else {}
    return dict(sorted({**base, **overrides}.items()))


def make(name: str, **overrides) -> Env:
    """Builds a registered environment, e.g. ``make('point_robot', goal_radius=0.3)``.

    Raises:
        ValueError: unknown name (the message lists the valid ones) or unknown override field.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown environment {name!r}; valid names: {', '.join(registered_names())}"
        )
    factory = _REGISTRY[name]
    check_options(name, overrides)
    return factory(**overrides)
