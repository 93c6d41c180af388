"""Diagnostic scripts run on the tiny config: real updates, finite numbers, the documented rows."""
import jax
import numpy as np
import pytest

from experiments import probe_reward_head
from experiments.configs import tiny


def test_probe_reward_head_reports_predictions_at_rewarded_and_unrewarded_steps():
    config = tiny.get_config()
    config.H = 40  # long enough for the scripted sweep to reach the goal
    rows = probe_reward_head.probe(config, updates=2, every=1, episodes=8)
    assert [r["update"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert all(np.isfinite(v) for v in r.values())
    # the scripted policy reaches the goal, so there are rewarded steps to predict
    assert rows[0]["true_at_reward"] > 0


def test_probe_reward_head_refuses_data_without_reward():
    config = tiny.get_config()  # H = 10: the sweep never reaches the arc
    with pytest.raises(ValueError, match="found no reward"):
        probe_reward_head.probe(config, updates=1, every=1, episodes=4)


def test_twohot_head_probe_learns_a_dense_reward():
    """The isolated reward-head probe runs and, with a large learning rate and mostly rewarded
    data, separates rewarded from unrewarded inputs within 200 updates."""
    from experiments import probe_twohot_head

    x, r = probe_twohot_head.synthetic_batch(jax.random.PRNGKey(0), 1000, 0.5)
    assert x.shape == (1000, probe_twohot_head.FEATURES) and 400 < int((r > 0).sum()) < 600
    rows = probe_twohot_head.probe(0.5, 200, 1e-3, {10, 200}, batch=256)
    assert [row["update"] for row in rows] == [10, 200]
    assert rows[-1]["pred_at_reward"] > 0.5 > 0.1 > rows[-1]["pred_at_zero"]
    # the squared-error symlog head (the decoder's loss) on the same data
    rows = probe_twohot_head.probe(0.5, 200, 1e-3, {10, 200}, batch=256, head="mse")
    assert rows[-1]["pred_at_reward"] > 0.5 > 0.1 > abs(rows[-1]["pred_at_zero"])
    with pytest.raises(ValueError, match="head must be one of"):
        probe_twohot_head.head_fns("l1")


def test_twohot_offset_probe_batches_and_learns_the_variation():
    """The offset mode's rewards are offset + U[-spread, spread], visible in 8 input dims (as
    3 u / spread, or 3 symlog(reward) with symlog_input); with a large learning rate the head
    learns the level and most of the variation around it within 300 updates."""
    from experiments import probe_twohot_head
    from mamba_jax.nets import symlog

    x, r = probe_twohot_head.offset_batch(jax.random.PRNGKey(0), 4000, 8.5, 1.0)
    assert x.shape == (4000, probe_twohot_head.FEATURES)
    assert 7.5 <= float(r.min()) and float(r.max()) <= 9.5
    np.testing.assert_allclose(np.asarray(x[:, :8].mean(1) - 3.0 * (r - 8.5)), 0.0, atol=1.5)
    xs, rs = probe_twohot_head.offset_batch(jax.random.PRNGKey(0), 4000, 8.5, 1.0, symlog_input=True)
    np.testing.assert_allclose(np.asarray(rs), np.asarray(r))
    np.testing.assert_allclose(float((xs[:, :8].mean(1) - 3.0 * symlog(rs)).mean()), 0.0, atol=0.05)
    rows = probe_twohot_head.offset_probe(0.0, 1.0, 300, 1e-3, {10, 300}, batch=256)
    assert [row["update"] for row in rows] == [10, 300]
    assert rows[-1]["corr"] > 0.9 and rows[-1]["slope"] > 0.5
    assert abs(rows[-1]["pred_mean"]) < 0.2


@pytest.mark.parametrize("head", ["twohot", "mse"])
def test_critic_probe_true_values_and_learning(head):
    """The chain's closed-form values equal the discounted sum of its rewards, and the critic
    (this codebase's update, either head kind) moves towards them; with a large learning rate,
    within 300 updates."""
    from experiments import probe_critic

    length, distance, gamma = 12, 6, 0.9
    truth = probe_critic.true_values(length, distance, gamma)
    for t in range(length):  # brute force: rewards on entering t+1, t+2, ... (absorbing end)
        states = np.minimum(t + 1 + np.arange(2000), length - 1)
        brute = np.sum(gamma ** np.arange(2000) * (states >= distance))
        np.testing.assert_allclose(truth[t], brute, rtol=1e-6)
    rows, _ = probe_critic.probe(2, 300, {10, 300}, length, distance, lr=3e-3, head=head)
    assert [r["update"] for r in rows] == [10, 300]
    assert all(np.isfinite(v) for r in rows for v in r.values())
    assert rows[-1]["mean_fraction_of_true_value"] > 2 * rows[0]["mean_fraction_of_true_value"]
    assert rows[-1]["value_at_goal"] > rows[0]["value_at_goal"]


def test_probe_model_gradient_rows():
    """The model-gradient probe runs on random-policy data of the dense point robot and reports
    cosines in [-1, 1], finite gradient norms and the reward-fit figures, one row per ``every``."""
    from experiments import probe_model_gradient
    from experiments.reproduce import apply_overrides

    config = tiny.get_config()
    apply_overrides(config, ["env_kwargs.goal_radius=10.0"])
    rows = probe_model_gradient.probe(config, updates=2, every=1, episodes=8, test_episodes=2)
    assert [r["update"] for r in rows] == [0, 1, 2]
    for r in rows:
        assert -1.0 <= r["cos_model_gradient_to_goal"] <= 1.0
        assert 0.0 <= r["model_gradient_towards_goal_fraction"] <= 1.0
        assert np.isfinite(r["model_gradient_norm"]) and np.isfinite(r["model_r1_abs_error"])
    # dense reward: the next reward is well predicted by the current one (a random walk)
    assert rows[0]["copy_current_reward_corr_next_reward"] > 0.5
    # with sequence=window the world model trains on chunks; the measurement is the same
    apply_overrides(config, ["sequence=window", "window_length=5"])
    chunked = probe_model_gradient.probe(config, updates=1, every=1, episodes=8, test_episodes=2)
    assert chunked[0] == rows[0]  # same fresh model, same held-out data
    assert chunked[1]["model_gradient_norm"] != rows[1]["model_gradient_norm"]
