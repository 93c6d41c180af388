"""bfloat16 compute (float32 params and losses) learns like float32 on a fixed batch sequence."""
import jax
import numpy as np

from experiments.configs import tiny
from mamba_jax import replay, trainer

STEPS = 30
TOLERANCE = 0.05  # relative, per step, on the world-model loss


def _loss_curve(dtype):
    config = tiny.get_config()
    config.compute_dtype = dtype
    setup = trainer.make_setup(config)
    run = trainer.init_run_state(setup, 0)
    run = jax.jit(lambda r: trainer.prefill(setup, r))(run)

    def curve(train, replay_state):
        def body(t, k):
            kb, ku = jax.random.split(k)
            batch = replay.sample(replay_state, kb, config.batch_size)
            t, metrics, _ = trainer.guarded_update(setup, t, batch, ku, setup.length)
            return t, metrics["wm/loss"]
        return jax.lax.scan(body, train, jax.random.split(jax.random.PRNGKey(7), STEPS))[1]

    return np.asarray(jax.jit(curve)(run.train, run.replay))


def test_bf16_world_model_loss_curve_matches_f32():
    f32 = _loss_curve("float32")
    bf16 = _loss_curve("bfloat16")
    assert np.all(np.isfinite(bf16))
    rel = np.abs(bf16 - f32) / np.abs(f32)
    assert rel.max() < TOLERANCE, (rel.max(), f32, bf16)
    assert f32[-5:].mean() < f32[:5].mean() and bf16[-5:].mean() < bf16[:5].mean()  # both learn
