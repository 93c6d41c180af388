"""On-device replay of whole meta-episodes (MAMBA spec section 3.4).

Every item is one complete meta-episode of fixed length T = K*H, stored from its first step, so a
sampled sequence always starts at a meta-episode start (``is_first`` at index 0) as MAMBA's
full-context training requires. The buffer is a ring over items: when full, the oldest
meta-episode is overwritten (FIFO, like the official code's eviction by timestamp).

Why not flashbax: its trajectory buffer stores a flat time axis whose sampling period must be
aligned to the meta-episode length, and its item buffer cannot be sharded over environments. A
ring of whole items is ~60 lines of pure functions, shards along the item axis, and makes the
"sequences start at meta-episode starts" invariant structural instead of a configuration detail.

All functions are pure and jittable: ``init``, ``add``, ``sample``, ``can_sample``.

Sharding (data parallelism, multi-host): with ``num_shards = D`` the capacity axis is D equal
blocks, one per device of the data-parallel mesh (the caller shards the arrays with
``PartitionSpec('data')`` along it). ``add`` writes the i-th block of N/D new items into the
i-th block of the buffer, and ``sample`` draws B/D items from each block, so the items that
device d's environments collected stay on device d and are the ones device d trains on: no
replay data ever crosses devices or hosts, and each device holds 1/D of the buffer.
``insert`` and ``size`` then count per block (every block receives the same number of items).
With D = 1 this is one plain ring.
"""
from __future__ import annotations

import math
from typing import Dict, Mapping, Tuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# item spec: key -> (per-step shape, dtype)
ItemSpec = Mapping[str, Tuple[Tuple[int, ...], jnp.dtype]]


@struct.dataclass
class ReplayState:
    """data: key -> [capacity, T, ...]; insert: int32 [] next slot; size: int32 [] items stored.
    With ``num_shards`` D > 1 (see module doc) insert and size count within each of the D blocks."""

    data: Dict[str, jax.Array]
    insert: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return next(iter(self.data.values())).shape[0]


def item_spec(obs_dim: int, action_dim: int, image: bool = False) -> Dict[str, tuple]:
    """The per-step fields stored for every meta-episode step."""
    spec = {
        "state": ((obs_dim,), jnp.float32),
        "reward": ((), jnp.float32),
        "time_step": ((), jnp.float32),
        "is_first": ((), jnp.bool_),
        "is_terminal": ((), jnp.bool_),
        "action": ((action_dim,), jnp.float32),
    }
    if image:
        spec["image"] = ((64, 64, 3), jnp.uint8)
    return spec


def bytes_per_meta_episode(spec: ItemSpec, length: int) -> int:
    """Bytes one stored meta-episode of ``length`` steps takes."""
    per_step = sum(int(np.prod(shape)) * jnp.dtype(dtype).itemsize for shape, dtype in spec.values())
    return per_step * length


def available_memory_bytes() -> int:
    """Physical memory the process may use (MemAvailable on Linux; a large number elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def check_fits(spec: ItemSpec, length: int, capacity: int, fraction: float = 0.6) -> int:
    """Returns the buffer's size in bytes; raises ``MemoryError`` naming the numbers if it can't fit.

    ``fraction`` of the currently available memory is the budget (the rest is for the model,
    XLA buffers and the environments).
    """
    total = bytes_per_meta_episode(spec, length) * capacity
    budget = int(available_memory_bytes() * fraction)
    if total > budget:
        raise MemoryError(
            f"replay buffer needs {total / 2**30:.2f} GiB ({capacity} meta-episodes x "
            f"{bytes_per_meta_episode(spec, length) / 2**10:.1f} KiB) but only "
            f"{budget / 2**30:.2f} GiB ({fraction:.0%} of available memory) may be used; "
            "lower config.replay_capacity"
        )
    return total


def init(spec: ItemSpec, length: int, capacity: int) -> ReplayState:
    """An empty buffer of ``capacity`` meta-episodes of ``length`` steps."""
    if capacity < 1 or length < 1:
        raise ValueError(f"replay capacity and length must be >= 1, got {capacity}, {length}")
    data = {k: jnp.zeros((capacity, length) + tuple(shape), dtype) for k, (shape, dtype) in spec.items()}
    return ReplayState(data=data, insert=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def _blocks(x: jax.Array, num_shards: int) -> jax.Array:
    """[D*m, ...] -> [D, m, ...] (a free reshape that keeps block sharding local)."""
    return x.reshape((num_shards, x.shape[0] // num_shards) + x.shape[1:])


def add(state: ReplayState, items: Dict[str, jax.Array], num_shards: int = 1) -> ReplayState:
    """Writes N meta-episodes ``items[k]: [N, T, ...]`` into the ring (oldest overwritten).

    With ``num_shards = D`` item block i (N/D items) goes to buffer block i (see module doc).
    """
    if set(items) != set(state.data):
        raise ValueError(f"replay.add: keys {sorted(items)} do not match buffer keys {sorted(state.data)}")
    n = next(iter(items.values())).shape[0]
    cap = state.capacity
    if n % num_shards or cap % num_shards:
        raise ValueError(f"replay.add: {n} items and capacity {cap} must both be divisible by the "
                         f"{num_shards} replay shards")
    n_local, cap_local = n // num_shards, cap // num_shards
    if n_local > cap_local:
        raise ValueError(f"replay.add: {n} items exceed the capacity {cap}")
    for k, v in items.items():
        chex.assert_shape(v, (n,) + state.data[k].shape[1:])
    slots = (state.insert + jnp.arange(n_local, dtype=jnp.int32)) % cap_local

    def put(buf, new):
        blocks = _blocks(buf, num_shards).at[:, slots].set(_blocks(new.astype(buf.dtype), num_shards))
        return blocks.reshape(buf.shape)

    return ReplayState(
        data={k: put(state.data[k], items[k]) for k in items},
        insert=(state.insert + n_local) % cap_local,
        size=jnp.minimum(state.size + n_local, cap_local),
    )


def can_sample(state: ReplayState) -> jax.Array:
    return state.size > 0


def sample(state: ReplayState, key: jax.Array, batch_size: int,
           num_shards: int = 1) -> Dict[str, jax.Array]:
    """Uniformly samples ``batch_size`` whole meta-episodes: key -> [B, T, ...].

    With ``num_shards = D``, batch rows [i*B/D, (i+1)*B/D) come from buffer block i (uniform in it).
    """
    if batch_size % num_shards:
        raise ValueError(f"replay.sample: batch_size {batch_size} is not divisible by the "
                         f"{num_shards} replay shards")
    idx = jax.random.randint(key, (num_shards, batch_size // num_shards), 0,
                             jnp.maximum(state.size, 1))
    take = jax.vmap(lambda block, i: block[i])
    return {k: take(_blocks(v, num_shards), idx).reshape((batch_size,) + v.shape[1:])
            for k, v in state.data.items()}


def capacity_from_steps(dataset_size_steps: int, length: int) -> int:
    """Official ``dataset_size`` is in env steps; our capacity is in whole meta-episodes."""
    return max(1, math.ceil(dataset_size_steps / length))
