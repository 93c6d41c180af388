"""Replay buffer of whole meta-episodes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamba_jax import replay


def _items(n, T, start):
    """n meta-episodes whose 'state' encodes (episode id, step)."""
    ids = jnp.arange(start, start + n, dtype=jnp.float32)
    state = jnp.stack([jnp.broadcast_to(ids[:, None], (n, T)),
                       jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32), (n, T))], -1)
    is_first = jnp.zeros((n, T), bool).at[:, 0].set(True)
    return {"state": state, "reward": jnp.ones((n, T)), "time_step": jnp.zeros((n, T)),
            "is_first": is_first, "is_terminal": jnp.zeros((n, T), bool),
            "action": jnp.zeros((n, T, 3))}


def test_ring_overwrites_oldest_and_counts():
    spec = replay.item_spec(obs_dim=2, action_dim=3)
    buf = replay.init(spec, length=5, capacity=4)
    assert not bool(replay.can_sample(buf))
    buf = replay.add(buf, _items(3, 5, 0))
    assert int(buf.size) == 3 and int(buf.insert) == 3
    buf = replay.add(buf, _items(3, 5, 3))  # ids 3,4,5 -> slots 3,0,1
    assert int(buf.size) == 4 and int(buf.insert) == 2
    np.testing.assert_array_equal(np.asarray(buf.data["state"][:, 0, 0]), [4, 5, 2, 3])


def test_samples_are_whole_meta_episodes_from_their_start():
    spec = replay.item_spec(obs_dim=2, action_dim=3)
    buf = replay.add(replay.init(spec, 6, 8), _items(5, 6, 10))
    batch = jax.jit(replay.sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 64)
    assert batch["state"].shape == (64, 6, 2) and batch["action"].shape == (64, 6, 3)
    st = np.asarray(batch["state"])
    assert set(np.unique(st[:, 0, 0])) <= set(range(10, 15))  # never an empty slot
    np.testing.assert_array_equal(st[:, :, 1], np.tile(np.arange(6), (64, 1)))  # from step 0
    assert np.all(np.asarray(batch["is_first"])[:, 0]) and not np.any(np.asarray(batch["is_first"])[:, 1:])
    assert np.all(st[:, :, 0] == st[:, :1, 0])  # one meta-episode per row


def test_sampling_is_uniform_over_stored_items():
    spec = replay.item_spec(obs_dim=2, action_dim=3)
    buf = replay.add(replay.init(spec, 2, 4), _items(4, 2, 0))
    ids = np.asarray(replay.sample(buf, jax.random.PRNGKey(1), 8000)["state"][:, 0, 0])
    counts = np.bincount(ids.astype(int), minlength=4)
    assert np.all(np.abs(counts / 8000 - 0.25) < 0.03)


def test_memory_accounting_and_clear_error():
    spec = replay.item_spec(obs_dim=2, action_dim=2)
    # state 8 + reward 4 + time 4 + 2 bools + action 8 = 26 bytes per step
    assert replay.bytes_per_meta_episode(spec, 300) == 26 * 300
    with pytest.raises(MemoryError, match="replay_capacity"):
        replay.check_fits(spec, 300, capacity=10**12)


def test_bad_inputs():
    spec = replay.item_spec(obs_dim=2, action_dim=3)
    buf = replay.init(spec, 5, 4)
    with pytest.raises(ValueError, match="keys"):
        replay.add(buf, {"state": jnp.zeros((1, 5, 2))})
    with pytest.raises(ValueError, match="capacity"):
        replay.add(buf, _items(5, 5, 0))
    with pytest.raises(AssertionError):
        replay.add(buf, _items(2, 4, 0))  # wrong length
    with pytest.raises(ValueError):
        replay.init(spec, 5, 0)


def test_sharded_ring_keeps_each_block_local():
    """With D shards, item block i of every add lands in buffer block i (FIFO within it), and
    sampled batch block i draws only from buffer block i."""
    spec = replay.item_spec(obs_dim=2, action_dim=3)
    D, cap, T = 2, 6, 4  # 3 slots per shard
    buf = replay.init(spec, T, cap)
    for start in (0, 4, 8):  # 3 adds of 4 items (2 per shard): the 3rd wraps each block's ring
        buf = replay.add(buf, _items(4, T, start), num_shards=D)
    assert int(buf.size) == 3 and int(buf.insert) == 0  # per shard
    ids = np.asarray(buf.data["state"][:, 0, 0]).reshape(D, 3)
    # shard 0 got ids {0,1}, {4,5}, {8,9}; shard 1 got {2,3}, {6,7}, {10,11}; 3 slots each, FIFO
    np.testing.assert_array_equal(ids, [[5, 8, 9], [7, 10, 11]])
    batch = replay.sample(buf, jax.random.PRNGKey(0), 400, num_shards=D)
    got = np.asarray(batch["state"][:, 0, 0]).reshape(D, 200)
    assert set(got[0]) == {5, 8, 9} and set(got[1]) == {7, 10, 11}
    assert bool(np.all(np.asarray(batch["is_first"][:, 0])))
    with pytest.raises(ValueError, match="divisible"):
        replay.add(buf, _items(3, T, 0), num_shards=D)
    with pytest.raises(ValueError, match="divisible"):
        replay.sample(buf, jax.random.PRNGKey(0), 3, num_shards=D)


def test_capacity_from_steps_rounds_up_to_whole_meta_episodes():
    assert replay.capacity_from_steps(1_000_000, 300) == 3334
    assert replay.capacity_from_steps(600, 300) == 2
    assert replay.capacity_from_steps(10, 300) == 1


def test_available_memory_bytes_is_positive_and_at_most_physical():
    avail = replay.available_memory_bytes()
    assert avail > 0
    total = [int(l.split()[1]) * 1024 for l in open('/proc/meminfo') if l.startswith('MemTotal')]
    assert avail <= total[0]
