"""Run a batched environment function with its environment axis split over local devices.

Why: on a CPU host XLA runs a vmapped MJX step on one device, and the step is a long chain of
small batched ops (9x9 factorisations, [9 x 22] dots, line-search reductions) that XLA:CPU does
not spread over its thread pool. A HalfCheetah batch of 64 therefore keeps ~1.1 of the 2 cores
busy. Exposing each core as its own XLA device (``--xla_force_host_platform_device_count``, see
``host_device_flag``) and giving every device a slice of the batch through ``jax.shard_map``
runs the slices concurrently: measured on the 2-core host, HalfCheetah at 64 parallel went from
~10k to ~20k env steps/s wall-clock (``experiments/bench_mjx.py --devices``). The environments
are independent, so there is no communication: the result is the same numbers as the unsplit
function, slice by slice.

Usage::

    # rollout(keys [N], actions [T, N, A]) -> per-env returns [N]
    run = split_over_devices(rollout, in_axes=(0, 1), out_axes=0)
    returns = run(keys, actions)  # N divisible by the number of devices
"""
from __future__ import annotations

import os
from typing import Any, Callable, Optional, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "envs"
_FLAG = "--xla_force_host_platform_device_count"


def host_device_flag(n: Optional[int] = None, environ=None) -> int:
    """Asks XLA to expose ``n`` CPU devices (default: one per CPU core of this process).

    Must run before JAX creates its CPU backend. A device count already set in ``XLA_FLAGS``
    wins. Returns the device count the process will have on CPU. Only the CPU backend is
    affected: accelerators keep their own devices.
    """
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    for tok in flags.split():
        if tok.startswith(_FLAG + "="):
            return int(tok.split("=", 1)[1])
    if n is None:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = max(int(n), 1)
    environ["XLA_FLAGS"] = f"{flags} {_FLAG}={n}".strip()
    return n


def _spec(axis: Optional[int]) -> P:
    if axis is None:
        return P()
    return P(*([None] * axis), AXIS)


def _specs(axes, tree_len: int):
    if isinstance(axes, (int, type(None))):
        return tuple(_spec(axes) for _ in range(tree_len))
    if len(axes) != tree_len:
        raise ValueError(f"in_axes has {len(axes)} entries for {tree_len} arguments")
    return tuple(_spec(a) for a in axes)


def split_over_devices(fn: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0,
                       devices: Optional[Sequence[jax.Device]] = None) -> Callable[..., Any]:
    """``jax.jit`` of ``fn`` with the environment axis of its arguments split over ``devices``.

    Args:
        fn: a function of positional array (or pytree) arguments that treats the environments
            independently along one axis, e.g. a ``vmap``-ed reset followed by a ``lax.scan`` of a
            ``vmap``-ed step. It sees a ``1/len(devices)`` slice of every split argument.
        in_axes: per positional argument, the axis holding the environments (``None``: the
            argument is passed whole to every device); one int applies to all arguments.
        out_axes: the environment axis of the output (int for all leaves, or ``None`` if the
            output is the same on every device, which ``fn`` must then guarantee).
        devices: default ``jax.local_devices()``.

    Returns:
        ``run(*args)``: jitted; the split sizes must be divisible by the number of devices
        (checked with a message naming the argument).
    """
    devices = list(devices if devices is not None else jax.local_devices())
    mesh = Mesh(devices, (AXIS,))
    n = len(devices)

    def run(*args):
        in_specs = _specs(in_axes, len(args))
        for i, (arg, spec) in enumerate(zip(args, in_specs)):
            if not spec:
                continue
            axis = len(spec) - 1
            for leaf in jax.tree.leaves(arg):
                size = leaf.shape[axis] if leaf.ndim > axis else None
                if size is None or size % n:
                    raise ValueError(
                        f"split_over_devices: argument {i} has {size} environments on axis {axis} "
                        f"(shape {tuple(leaf.shape)}), not divisible by the {n} devices")
        # vma checks off: MJX's solver mixes per-device values with constants inside lax.cond,
        # which the varying-axis type check rejects although no collective is involved.
        mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=_spec(out_axes),
                               check_vma=False)
        return mapped(*args)

    jitted = jax.jit(run)
    jitted.mesh = mesh  # type: ignore[attr-defined]
    return jitted


def place(x, axis: Optional[int], mesh: Mesh):
    """``x`` (array or pytree) placed on ``mesh`` split along ``axis`` (``None``: replicated),
    so a compiled ``split_over_devices`` function gets inputs already in its layout."""
    return jax.device_put(x, NamedSharding(mesh, _spec(axis)))
