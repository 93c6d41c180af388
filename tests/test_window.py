"""The vanilla-Dreamer baseline's training chunks."""
import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax import trainer


def test_window_batch_cuts_consecutive_steps_and_restarts_belief():
    B, T, L = 8, 30, 7
    steps = jnp.broadcast_to(jnp.arange(T, dtype=jnp.float32), (B, T))
    batch = {"time_step": steps, "is_first": jnp.zeros((B, T), bool).at[:, 0].set(True),
             "action": jnp.stack([steps, -steps], -1)}
    out = trainer.window_batch(batch, jax.random.PRNGKey(0), L)
    ts = np.asarray(out["time_step"])
    assert ts.shape == (B, L) and out["action"].shape == (B, L, 2)
    np.testing.assert_array_equal(np.diff(ts, axis=1), 1.0)  # consecutive
    assert ts.min() >= 0 and ts.max() <= T - 1
    assert len(set(ts[:, 0])) > 1  # random starts
    np.testing.assert_array_equal(np.asarray(out["action"])[..., 0], ts)
    assert np.all(np.asarray(out["is_first"])[:, 0]) and not np.any(np.asarray(out["is_first"])[:, 1:])
    assert not np.any(np.asarray(batch["is_first"])[:, 1:])  # the stored data is untouched
