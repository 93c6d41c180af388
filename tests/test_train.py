"""The training system end to end: CLI, files, checkpoints, resume, bad input, data parallelism.

Everything runs the real code on the tiny config (seconds per round on CPU).
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from mamba_jax import checkpointing, run, trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(args, env=None, **kw):
    env = dict(os.environ, **(env or {}))
    env.setdefault("WANDB_MODE", "offline")
    return subprocess.run([sys.executable, "-m", "experiments.train",
                           "--config=experiments/configs/tiny.py", "--no_progress"] + args,
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=600, **kw)


def _params(state):
    return jax.tree.leaves(jax.device_get(state.train.params))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("cli") / "run")
    proc = _cli([f"--workdir={workdir}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


def test_cli_writes_a_complete_run_folder(cli_run):
    workdir, proc = cli_run
    assert "done:" in proc.stdout
    for name in ("config.json", "metrics.jsonl", "learning_curve.png", "diagnostics.png",
                 "summary.json"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0, name
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_rows = [r for r in rows if "wm/loss" in r]
    eval_rows = [r for r in rows if "eval/return" in r]
    assert len(train_rows) == 3 and len(eval_rows) >= 2
    c = tiny.get_config()
    # each evaluation also records how often each sub-episode found a positive reward
    assert all(0.0 <= r[f"eval/found_sub{k}"] <= 1.0 for r in eval_rows for k in range(c.K))
    # the reward head's sparse-reward diagnostics arrive as conditional means, not products
    assert {"wm/rewarded_frac", "wm/reward_pred_rewarded", "wm/reward_pred_unrewarded"} <= set(
        train_rows[-1]) and not any("_x_" in k for k in train_rows[-1])
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert np.isfinite(v), (k, v)
    # frames are counted exactly: prefill + 3 rounds of num_envs * K * H
    assert train_rows[-1]["frames"] == (c.prefill + 3 * c.num_envs) * c.K * c.H
    assert train_rows[-1]["updates"] == 3 * 2
    assert os.listdir(os.path.join(workdir, "trajectories"))
    wandb_dir = os.path.join(workdir, "wandb")
    assert any(d.startswith("offline-run") for d in os.listdir(wandb_dir))
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["finished"] and summary["frames"] == train_rows[-1]["frames"]


def test_checkpoint_is_loadable(cli_run):
    workdir, _ = cli_run
    config = tiny.get_config()
    setup = trainer.make_setup(config)
    manager = checkpointing.make_manager(os.path.join(workdir, "checkpoints"), 3)
    state, meta = checkpointing.restore(manager, trainer.init_run_state(setup, 0),
                                        checkpointing.fingerprint_of(config, setup.replay_shards))
    assert meta["rounds"] == 3 and int(state.rounds) == 3 and int(state.replay.size) > 0
    assert all(np.all(np.isfinite(p)) for p in _params(state))


def test_existing_run_is_never_overwritten(cli_run):
    workdir, _ = cli_run
    before = open(os.path.join(workdir, "metrics.jsonl")).read()
    proc = _cli([f"--workdir={workdir}"])
    assert proc.returncode == 2 and "--resume" in proc.stderr
    assert open(os.path.join(workdir, "metrics.jsonl")).read() == before


def test_bad_flags_fail_before_compiling_and_name_the_field(tmp_path):
    proc = _cli([f"--workdir={tmp_path}/a", "--config.num_envs=0"])
    assert proc.returncode == 2 and "config.num_envs" in proc.stderr
    proc = _cli([f"--workdir={tmp_path}/b", "--config.env_name=nope"])
    assert proc.returncode == 2 and "point_robot" in proc.stderr and "nope" in proc.stderr
    proc = _cli([f"--workdir={tmp_path}/c", "--config.no_such_field=1"])
    assert proc.returncode != 0 and "no_such_field" in proc.stderr
    assert not os.path.exists(f"{tmp_path}/a/checkpoints")


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    config = tiny.get_config()
    config.wandb_mode = "disabled"
    _, straight = run.train(config, str(tmp_path / "straight"), progress=False)
    summary, _ = run.train(config, str(tmp_path / "split"), progress=False, max_rounds=1)
    assert not summary["finished"]
    summary, resumed = run.train(config, str(tmp_path / "split"), resume=True, progress=False)
    assert summary["finished"] and int(resumed.updates) == int(straight.updates)
    for a, b in zip(_params(straight), _params(resumed)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(straight.key), np.asarray(resumed.key))


def test_incompatible_or_corrupt_checkpoint_is_refused_and_kept(tmp_path):
    config = tiny.get_config()
    config.wandb_mode = "disabled"
    workdir = str(tmp_path / "r")
    run.train(config, workdir, progress=False, max_rounds=1)
    other = tiny.get_config()
    other.wandb_mode = "disabled"
    other.H = 12
    with pytest.raises(checkpointing.CheckpointError, match="H"):
        run.train(other, workdir, resume=True, progress=False)
    ckpt_root = os.path.join(workdir, "checkpoints")
    steps = sorted(os.listdir(ckpt_root))
    # damage every array file of the latest checkpoint
    latest = os.path.join(ckpt_root, max(steps, key=lambda s: int(s) if s.isdigit() else -1))
    for root, _, files in os.walk(os.path.join(latest, "state")):
        for f in files:
            with open(os.path.join(root, f), "wb") as fh:
                fh.write(b"garbage")
    with pytest.raises(checkpointing.CheckpointError, match="corrupt"):
        run.train(config, workdir, resume=True, progress=False)
    assert sorted(os.listdir(ckpt_root)) == steps  # nothing deleted or rewritten


def test_nonfinite_updates_are_skipped_then_abort(tmp_path):
    config = tiny.get_config()
    config.wandb_mode = "disabled"
    config.agent.model_lr = float("nan")
    config.max_nonfinite_streak = 3
    with pytest.raises(run.TrainingAborted, match="non-finite"):
        run.train(config, str(tmp_path / "nan"), progress=False)
    rows = [json.loads(line) for line in open(tmp_path / "nan" / "metrics.jsonl")]
    assert rows[-1]["nonfinite_total"] >= 3


def test_sigterm_checkpoints_and_stops(tmp_path):
    workdir = str(tmp_path / "sig")
    env = dict(os.environ, WANDB_MODE="offline")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.train",
                             "--config=experiments/configs/tiny.py", "--no_progress",
                             f"--workdir={workdir}", "--config.total_frames=1000000"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    metrics = os.path.join(workdir, "metrics.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline:
        if os.path.exists(metrics) and '"rounds"' in open(metrics).read():
            break
        if proc.poll() is not None:  # crashed before its first round
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM" in out
    assert os.listdir(os.path.join(workdir, "checkpoints"))


_DP_SCRIPT = r"""
import dataclasses, jax, numpy as np
from experiments.configs import tiny
from mamba_jax import trainer, replay
assert jax.device_count() == 4, jax.devices()
config = tiny.get_config()
config.compute_dtype = "float32"  # the mesh logic to float tolerance (bf16 rounding would hide it)
setup4 = trainer.make_setup(config)
setup1 = dataclasses.replace(setup4, mesh=trainer.make_mesh(jax.devices()[:1]))
run = trainer.init_run_state(setup4, 0)
run = jax.jit(lambda r: trainer.prefill(setup4, r))(run)
batch = jax.device_get(replay.sample(run.replay, jax.random.PRNGKey(3), config.batch_size,
                                     setup4.replay_shards))
assert len(np.unique(batch["state"].reshape(config.batch_size, -1), axis=0)) > 1  # distinct rows
train = jax.device_get(run.train)
outs = []
for setup in (setup1, setup4):
    f = jax.jit(lambda t, b, k: trainer.guarded_update(setup, t, b, k, 20)[0])
    # same global inputs, placed on this setup's mesh (batch split over 'data' by the update)
    new = f(trainer.replicate(setup, train), trainer.replicate(setup, batch), jax.random.PRNGKey(4))
    outs.append(jax.tree.leaves(jax.device_get(new.params)))
for a, b in zip(*outs):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
print("DP_OK", len(outs[0]))
"""


def _host_devices_env(n: int) -> dict:
    """Environment for a subprocess that sees ``n`` CPU devices."""
    return {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
            + f" --xla_force_host_platform_device_count={n}"}


def _run_on_host_devices(script: str, n: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO,
                          env=dict(os.environ, **_host_devices_env(n)),
                          capture_output=True, text=True, timeout=600)


def test_four_device_update_equals_one_device_update():
    proc = _run_on_host_devices(_DP_SCRIPT, 4)
    assert "DP_OK" in proc.stdout, proc.stderr[-3000:]


def test_load_run_restores_the_trained_state(cli_run):
    workdir, _ = cli_run
    setup, state, meta = run.load_run(workdir)
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert int(state.updates) == summary["updates"] and int(state.frames) == summary["frames"]
    assert state.replay is None  # dropped unless asked for
    assert setup.config.env_name == tiny.get_config().env_name
    assert all(np.all(np.isfinite(x)) for x in _params(state))
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        run.load_run(os.path.dirname(workdir))


def test_fork_continues_a_checkpoint_under_a_changed_config(cli_run, tmp_path):
    workdir, _ = cli_run
    before = sorted(os.listdir(os.path.join(workdir, "checkpoints")))
    config = run.load_config(workdir)
    batch = config.agent.behavior_batch_length
    config.agent.behavior_batch_length = batch // 2
    dst = str(tmp_path / "fork")
    record = run.fork_run(workdir, dst, config)
    assert record["changed"] == {"agent.behavior_batch_length": {"from": batch, "to": batch // 2}}
    assert record["step"] == 3 and record["updates"] == 6
    # the branch holds the source's state (replay and RNG included) under the new fingerprint
    _, a, _ = run.load_run(workdir, with_replay=True)
    setup, b, meta = run.load_run(dst, with_replay=True)
    assert setup.config.agent.behavior_batch_length == batch // 2
    assert meta["forked_from"]["step"] == 3
    for x, y in zip(jax.tree.leaves(jax.device_get(a)), jax.tree.leaves(jax.device_get(b))):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(line) for line in open(os.path.join(dst, "metrics.jsonl"))]
    assert rows and max(r.get("updates", 0) for r in rows) == 6
    # refusals name the problem and write nothing
    with pytest.raises(ValueError, match="already holds files"):
        run.fork_run(workdir, dst, config)
    with pytest.raises(ValueError, match="nothing to branch"):
        run.fork_run(workdir, str(tmp_path / "same"), run.load_config(workdir))
    wider = run.load_config(workdir)
    wider.agent.actor_units *= 2
    with pytest.raises(ValueError, match="agent.actor_units.*change the checkpoint's arrays"):
        run.fork_run(workdir, str(tmp_path / "wider"), wider)
    assert not os.path.exists(tmp_path / "same") and not os.path.exists(tmp_path / "wider")
    # MAMBA without its window heads: their parameters and Adam moments are left out, on request
    plain = run.load_config(workdir)
    plain.agent.reconstruction_window = 0
    with pytest.raises(ValueError, match="unused.*drop_unused"):
        run.fork_run(workdir, str(tmp_path / "plain"), plain)
    record = run.fork_run(workdir, str(tmp_path / "plain"), plain, drop_unused=True)
    assert record["dropped_arrays"] and all("multi" in k for k in record["dropped_arrays"])
    _, c, _ = run.load_run(str(tmp_path / "plain"))
    assert not any("multi" in jax.tree_util.keystr(p)
                   for p, _ in jax.tree_util.tree_leaves_with_path(c.train.params))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == before


def test_fork_cli_refuses_method_changes(cli_run, tmp_path):
    from experiments import fork_run

    workdir, _ = cli_run
    assert fork_run.main([f"--src={workdir}", f"--dst={tmp_path / 'f'}",
                          "--set=variant=dreamer"]) == 2
    assert fork_run.main([f"--src={tmp_path}", f"--dst={tmp_path / 'g'}",
                          "--set=seed=2"]) == 2  # not a run folder
    assert not os.path.exists(tmp_path / "f") and not os.path.exists(tmp_path / "g")


def test_summary_reports_peak_memory(cli_run):
    workdir, _ = cli_run
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    assert summary["peak_rss_mb"] > 100  # the process's VmHWM in MiB (Linux)


def test_inspect_run_writes_figures_and_reward_report(cli_run, tmp_path):
    workdir, _ = cli_run
    out = str(tmp_path / "insp")
    proc = subprocess.run([sys.executable, "-m", "experiments.inspect_run", f"--workdir={workdir}",
                           "--tasks=4", f"--out={out}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out + "_reward.json"))
    c = tiny.get_config()
    for name, rep in report["policies"].items():
        assert len(rep["sub_episodes"]) == c.K, name
        for sub in rep["sub_episodes"]:
            assert all(np.isfinite(v) for v in sub.values())
        critic = rep["critic"]
        assert len(critic["value_mean_per_sub_episode"]) == c.K
        assert np.isfinite(critic["value_mean_first_sub_episode"])
        behaviour = rep["behaviour"]
        assert behaviour["tasks"] == 4 and len(behaviour["sub_episodes"]) == c.K
        assert all(0.0 <= sub["found_rate"] <= 1.0 for sub in behaviour["sub_episodes"])
    assert "scripted" in report["policies"]  # point robot has a scripted reference
    for suffix in ("_reward.png", "_figure1.png", "_value.png"):
        assert os.path.getsize(out + suffix) > 0, suffix


def test_probe_actor_gradient_reports_the_actor_signal(cli_run, tmp_path):
    workdir, _ = cli_run
    out = str(tmp_path / "ag.json")
    proc = subprocess.run([sys.executable, "-m", "experiments.probe_actor_gradient",
                           f"--workdir={workdir}", "--tasks=3", f"--out={out}"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.load(open(out))
    assert len(report["per_sub_episode"]) == tiny.get_config().K
    assert -1.0 <= report["cos_model_gradient_to_goal"] <= 1.0
    assert report["model_gradient_norm"] >= 0 and 0 <= report["tanh_saturated_fraction"] <= 1
    assert 0.1 <= report["std_mean"] <= 1.0  # the official min/max std
    for term in ("reward_term", "critic_term"):  # dG/da split into its reward and critic parts
        assert -1.0 <= report[term]["cos_model_gradient_to_goal"] <= 1.0
        assert np.isfinite(report[term]["model_gradient_norm"])
    # --step probes an earlier checkpoint (a step is a round count) instead of the latest
    steps = sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit())
    assert len(steps) >= 2, steps
    early = str(tmp_path / "ag_early.json")
    proc = subprocess.run([sys.executable, "-m", "experiments.probe_actor_gradient",
                           f"--workdir={workdir}", "--tasks=3", f"--step={steps[0]}",
                           f"--out={early}"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = json.load(open(early))
    assert first["updates"] < report["updates"]
    assert report["posterior_reward_fit"]["abs_error"] >= 0
    assert report["decoder_reward_fit"]["decoder_abs_error"] >= 0
    assert report["decoder_reward_fit"]["reward_std"] >= 0
    dyn = report["dynamics_fit"]  # the imagined step's decoded position and its Jacobian
    assert dyn["position_abs_error"] >= 0 and dyn["jacobian_rel_error"] >= 0
    assert -1.0 <= dyn["dense_reward_through_model_step"]["cos_model_gradient_to_goal"] <= 1.0
    assert np.isfinite(dyn["reward_term_norm_ratio"]) and np.isfinite(dyn["step_gain"])
    assert -1.0 <= report["decoder_r1_term"]["cos_model_gradient_to_goal"] <= 1.0
    assert report["decoder_r1_fit"]["model_r1_abs_error"] >= 0
    for name in ("bayes_reference", "bayes_reference_coarse"):  # what the history allows
        assert report[name]["inconsistent_fraction"] == 0.0, name
        assert 0.0 <= report[name]["arc_deg_mean"] <= 180.0, report[name]
        assert len(report[name]["per_sub_episode"]) == tiny.get_config().K
    assert report["meta_return"] == pytest.approx(sum(report["return_per_sub_episode"]), abs=1e-3)
    assert 0.0 <= report["beyond_goal_radius_fraction"] <= 1.0
    assert first["updates"] == steps[0] * report["updates"] // steps[-1]  # a fixed updates per round


def test_actor_gradient_summary_geometry():
    from experiments.probe_actor_gradient import posterior_fit, reward_fit, summarise

    pos = np.zeros((1, 4, 2))
    goal = np.array([[0.0, 1.0]])
    up, down = np.array([0.0, 1.0]), np.array([0.0, -1.0])
    grad = np.stack([up, up, up, down])[None]  # 3 of 4 towards the goal
    action = np.stack([up, down, up, down])[None]
    mu = np.array([[[0.0, 3.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # one component saturated
    sub = np.array([[0, 0, 1, 1]])
    rep = summarise(grad, action, mu, np.full((1, 4, 2), 0.5), pos, goal, sub, K=2)
    assert rep["cos_model_gradient_to_goal"] == pytest.approx(0.5)
    assert rep["model_gradient_towards_goal_fraction"] == pytest.approx(0.75)
    assert rep["cos_action_to_goal"] == pytest.approx(0.0)
    assert rep["tanh_saturated_fraction"] == pytest.approx(1 / 8)
    assert rep["per_sub_episode"][0]["cos_model_gradient_to_goal"] == pytest.approx(1.0)
    assert rep["per_sub_episode"][1]["cos_model_gradient_to_goal"] == pytest.approx(0.0)
    reward = np.array([[0.0, 1.0, 2.0, 3.0]])
    fit = reward_fit(reward + 1.0, reward, np.zeros((1, 4), int))  # a perfect one-step predictor
    assert fit["model_r1_corr_next_reward"] == pytest.approx(1.0)
    assert fit["model_r1_abs_error"] == pytest.approx(0.0)
    assert fit["copy_current_reward_abs_error"] == pytest.approx(1.0)
    assert "model_r1_corr_next_posterior" not in fit
    post_heads = reward + np.array([[0.0, 0.5, -0.5, 0.5]])  # the head at each posterior
    fit = reward_fit(reward + 1.0, reward, np.zeros((1, 4), int), post_heads)
    assert fit["model_r1_abs_error_next_posterior"] == pytest.approx(0.5)
    assert fit["model_r1_corr_next_posterior"] == pytest.approx(
        np.corrcoef([1.0, 2.0, 3.0], [1.5, 1.5, 3.5])[0, 1])
    assert fit["next_posterior_corr_next_reward"] == pytest.approx(
        np.corrcoef([1.5, 1.5, 3.5], [1.0, 2.0, 3.0])[0, 1])
    # changes from t: r_1 - head_t = [1, 0.5, 1.5]; head_{t+1} - head_t = [1.5, 0, 2]
    assert fit["model_r1_change_corr_posterior_change"] == pytest.approx(
        np.corrcoef([1.0, 0.5, 1.5], [1.5, 0.0, 2.0])[0, 1])
    post = posterior_fit(reward + 0.5, reward)
    assert post["corr"] == pytest.approx(1.0) and post["abs_error"] == pytest.approx(0.5)
    assert post["bias"] == pytest.approx(0.5) and post["reward_mean"] == pytest.approx(1.5)
    from experiments.probe_actor_gradient import decoder_fit
    # two sub-episodes of 3 steps: the reset steps (0 and 3) are left out
    rew = np.array([[0.0, 1.0, 3.0, 0.0, 2.0, 6.0]])
    dec = rew + np.array([[9.0, 0.5, 0.5, -9.0, 0.5, 0.5]])  # the reset steps' errors don't count
    flat = np.full((1, 6), 3.0)  # a head that predicts one level
    fit = decoder_fit(dec, flat, rew, np.array([[0, 0, 0, 1, 1, 1]]))
    assert fit["decoder_corr"] == pytest.approx(1.0) and fit["decoder_abs_error"] == pytest.approx(0.5)
    assert fit["head_std"] == pytest.approx(0.0) and fit["reward_std"] == pytest.approx(np.std([1, 3, 2, 6]))
    assert fit["head_abs_error"] == pytest.approx(np.mean([2, 0, 1, 3]))
    from experiments.probe_actor_gradient import dynamics_fit
    # a perfect imagined step (p_1 = p + 0.1 a, Jacobian 0.1 I) and a reward head whose gradient
    # is half the true reward's through that step
    where = np.array([[[0.0, 0.0], [0.1, 0.0], [0.5, 0.5], [0.4, 0.5]]])  # a new sub-episode at 2
    act = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.5, 0.5]]])
    goal2 = np.array([[3.0, 4.0]])
    p1 = where + 0.1 * act
    unit = (goal2[:, None] - p1) / np.linalg.norm(goal2[:, None] - p1, axis=-1, keepdims=True)
    jac = np.broadcast_to(0.1 * np.eye(2), (1, 4, 2, 2))
    fit = dynamics_fit(jac, p1, where, where, act, goal2, 0.05 * unit, np.array([[0, 0, 1, 1]]), 0.1)
    assert fit["position_abs_error"] == pytest.approx(0.0)
    assert fit["jacobian_diag_mean"] == pytest.approx(0.1) and fit["jacobian_rel_error"] == pytest.approx(0.0)
    assert fit["jacobian_offdiag_abs_mean"] == pytest.approx(0.0)
    assert fit["step_gain"] == pytest.approx(1.0) and fit["step_cos"] == pytest.approx(1.0)
    # p_1 at t against the true position at t + 1, over the pairs (0, 1) and (2, 3) only
    assert fit["next_position_abs_error"] == pytest.approx(0.0)
    through = fit["dense_reward_through_model_step"]
    assert through["model_gradient_norm"] == pytest.approx(0.1)
    assert through["model_gradient_towards_goal_fraction"] == pytest.approx(1.0)
    assert fit["reward_term_cos_to_it"] == pytest.approx(1.0)
    assert fit["reward_term_norm_ratio"] == pytest.approx(0.5)
    from experiments.probe_actor_gradient import bayes_reference
    # goal (0, 1); two sub-episodes visiting 0 (the reset step, no evidence), (0.1, 0), (0.1, 0.1):
    # the reward 1 - d at (0.1, 0) pins th = pi / 2, and the belief carries into sub-episode 2
    g0 = np.array([[0.0, 1.0]])
    walk = np.array([[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]])
    pos2 = np.concatenate([walk, walk])[None]
    rew2 = np.where(np.arange(6) % 3 == 0, 0.0, 1.0 - np.linalg.norm(pos2[0] - g0, axis=-1))[None]
    act2 = np.broadcast_to([0.0, 1.0], (1, 6, 2))
    nxt = pos2 + 0.1 * act2
    half_true = 0.05 * (g0[:, None] - nxt) / np.linalg.norm(g0[:, None] - nxt, axis=-1, keepdims=True)
    ref = bayes_reference(pos2, act2, rew2, np.array([[0, 0, 0, 1, 1, 1]]), g0, half_true,
                          goal_radius=10.0, reward_offset=0.0, step_size=0.1, K=2)
    assert ref["inconsistent_fraction"] == 0.0
    first, second = ref["per_sub_episode"]
    assert first["arc_deg_mean"] == pytest.approx(180.0 / 3, abs=0.2)  # 180 at step 0, then pinned
    assert first["pinned_fraction"] == pytest.approx(2 / 3)
    # at step 0 the belief is symmetric about the y axis: its mean gradient points up, at the goal
    assert first["cos_model_gradient_to_goal"] == pytest.approx(1.0, abs=1e-3)
    assert second["pinned_fraction"] == 1.0 and second["model_gradient_norm"] == pytest.approx(0.1, abs=1e-3)
    assert second["reward_term_cos_to_it"] == pytest.approx(1.0, abs=1e-4)
    assert second["reward_term_norm_ratio"] == pytest.approx(0.5, abs=1e-3)
    from experiments.probe_actor_gradient import shrink_by_distance
    true = np.array([[-1.0, -3.0, -5.0, 0.5]])
    where = np.array([[[0.5, 0.0], [3.0, 0.0], [0.0, 7.0], [0.1, 0.1]]])  # distances 0.5, 3, 7, 0.14
    rows = shrink_by_distance(np.sign(true) * np.expm1(0.5 * np.log1p(np.abs(true))), true, where)
    assert [r["steps"] for r in rows] == [2, 0, 1, 0, 1]
    assert rows[2]["shrink"] == pytest.approx(0.5) and rows[4]["shrink"] == pytest.approx(0.5)


def test_return_to_go_is_what_the_critic_estimates():
    from experiments.inspect_run import return_to_go

    r = np.array([[0.0, 1.0, 0.0, 2.0]])
    # G_t = r_{t+1} + 0.5 r_{t+2} + ...; nothing after the last step
    np.testing.assert_allclose(return_to_go(r, 0.5), [[1.0 + 0.0 + 0.5, 0.0 + 1.0, 2.0, 0.0]])


def test_correlation_is_pearson_and_none_when_constant():
    from experiments.inspect_run import correlation

    a = np.array([0.0, 1.0, 2.0, 3.0])
    assert correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert correlation(a, -a) == pytest.approx(-1.0)
    assert correlation(a, np.ones(4)) is None and correlation(np.ones(4), a) is None


def test_split_round_equals_the_fused_round_program():
    """``Phases.round`` (collect executable + one update executable called n times) gives the
    same state and metrics as ``trainer.train_round`` (the whole round as one program)."""
    config = tiny.get_config()
    config.train_ratio = 2 * config.train_ratio  # >= 2 updates per round: the loop is exercised
    setup = trainer.make_setup(config)
    assert setup.updates_per_round >= 2
    phases = trainer.compile_phases(setup)
    run_a = phases.prefill(trainer.init_run_state(setup, 0))
    run_b = phases.prefill(trainer.init_run_state(setup, 0))
    for _ in range(2):
        run_a, m_a = phases.round(run_a)
        run_b, m_b = jax.jit(lambda r: trainer.train_round(setup, r))(run_b)
    assert set(m_a) == set(m_b)
    for k in m_a:
        np.testing.assert_allclose(np.asarray(m_a[k]), np.asarray(m_b[k]), rtol=1e-4, atol=1e-5,
                                   err_msg=k)
    for x, y in zip(jax.tree.leaves(jax.device_get(run_a)), jax.tree.leaves(jax.device_get(run_b))):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert int(run_a.updates) == 2 * setup.updates_per_round and int(run_a.rounds) == 2


def test_updates_on_a_wm_horizon_bucket_equal_updates_on_whole_meta_episodes():
    """With the wm-horizon schedule below K*H, ``Phases.round`` trains on the first L steps of
    each meta-episode (L = wm_horizon rounded up to ``wm_horizon_bucket``); the state and metrics
    equal the fused round program's, which always trains on all K*H steps."""
    config = tiny.get_config()
    config.wm_horizon_initial = 4
    config.wm_horizon_reach_frames = 1e9  # stays at ~4 of K*H = 20 steps
    config.wm_horizon_bucket = 5
    setup = trainer.make_setup(config)
    phases = trainer.compile_phases(setup)
    run_a = phases.prefill(trainer.init_run_state(setup, 0))
    run_b = phases.prefill(trainer.init_run_state(setup, 0))
    lengths = []
    for _ in range(2):
        wm_h = trainer.wm_horizon_for(setup, run_a.frames + config.num_envs * setup.length)
        lengths.append(phases.length_for(wm_h))
        run_a, m_a = phases.round(run_a)
        run_b, m_b = jax.jit(lambda r: trainer.train_round(setup, r))(run_b)
        for k in m_a:
            np.testing.assert_allclose(np.asarray(m_a[k]), np.asarray(m_b[k]), rtol=1e-4,
                                       atol=1e-5, err_msg=k)
    assert lengths == [5, 5] and float(m_a["wm/horizon"]) == 5.0  # ceil(4 + a little)
    for x, y in zip(jax.tree.leaves(jax.device_get(run_a)), jax.tree.leaves(jax.device_get(run_b))):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert trainer.update_length(setup, 20) == 20 and trainer.update_length(setup, 6) == 10
    config.wm_horizon_bucket = 0
    assert trainer.update_length(trainer.make_setup(config), 4) == 20
    config.wm_horizon_bucket = -1
    with pytest.raises(trainer.ConfigError, match="config.wm_horizon_bucket"):
        trainer.validate_config(config)


_SHARDED_REPLAY_SCRIPT = r"""
import re, jax, numpy as np
from experiments.configs import tiny
from mamba_jax import replay, trainer
assert jax.device_count() == 4, jax.devices()
config = tiny.get_config()
config.prefill = 5  # rounded up to 8: every device gets the same share
setup = trainer.make_setup(config)
assert setup.replay_shards == 4 and setup.prefill == 8 and setup.capacity % 4 == 0
phases = trainer.compile_phases(setup)
run = phases.prefill(trainer.init_run_state(setup, 0))
for _ in range(2):
    run, metrics = phases.round(run)
assert all(np.isfinite(float(v)) for v in metrics.values())
assert int(run.frames) == (8 + 2 * config.num_envs) * setup.length
first = run.replay.data["is_first"]
assert first.sharding.spec == jax.sharding.PartitionSpec("data"), first.sharding
shards = first.addressable_shards
assert len(shards) == 4 and all(s.data.shape[0] == setup.capacity // 4 for s in shards)
filled = [int(np.asarray(s.data)[:, 0].sum()) for s in shards]  # stored meta-episodes per device
assert filled == [int(run.replay.size)] * 4 == [2 + 2 * config.num_envs // 4] * 4, filled

def gathered_bytes(hlo):
    size = {"f32": 4, "s32": 4, "u32": 4, "pred": 1, "bf16": 2}
    total = 0
    for dt, dims in re.findall(r"= (\w+)\[([\d,]*)\]\S* all-gather\(", hlo):
        total += size.get(dt, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total

item_bytes = replay.bytes_per_meta_episode(replay.item_spec(setup.meta.obs_dim, setup.meta.action_dim),
                                           setup.length)
carry = (run.train, run.nonfinite_streak, run.nonfinite_total)
upd = phases.update.compile(carry, run.replay, jax.random.PRNGKey(0), run.frames * 0 + 20)
col = phases.collect.lower(run).compile()
assert gathered_bytes(col.as_text()) == 0
gathered = gathered_bytes(upd.wm.as_text()) + gathered_bytes(upd.ac.as_text())
assert gathered < item_bytes, gathered
print("SHARDED_OK", filled)
"""


def test_replay_is_sharded_per_device_and_never_gathered():
    """4 devices: each device stores the meta-episodes its own environments collected and trains
    on samples of them; collection+insert and sampling move no replay data between devices."""
    proc = _run_on_host_devices(_SHARDED_REPLAY_SCRIPT, 4)
    assert "SHARDED_OK" in proc.stdout, proc.stderr[-3000:]


def test_run_trained_on_two_devices_loads_on_one(tmp_path):
    """A run whose replay buffer was saved split over 2 devices loads for analysis on 1 device
    (with and without the buffer), and resuming it on 1 device is refused with a clear message."""
    workdir = str(tmp_path / "run2")
    proc = _cli([f"--workdir={workdir}", "--max_rounds=1", "--wandb_mode=disabled"],
                env=_host_devices_env(2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert jax.device_count() == 1
    setup, state, meta = run.load_run(workdir)
    assert meta["rounds"] == 1 and state.replay is None
    assert all(np.all(np.isfinite(p)) for p in _params(state))
    _, state, _ = run.load_run(workdir, with_replay=True)
    assert int(state.replay.size) > 0
    proc = _cli([f"--workdir={workdir}", "--resume", "--max_rounds=1", "--wandb_mode=disabled"])
    assert proc.returncode != 0 and "replay_shards" in proc.stderr


def test_checkpoint_fingerprints_name_nested_fields_and_accept_older_runs():
    """A checkpoint from before env_kwargs listed the defaults, or before a performance-only agent
    field existed, resumes; a real difference is named by its dotted field."""
    from experiments.configs import point_robot

    c = point_robot.get_config()
    now = checkpointing.fingerprint_of(c)
    assert now["env_kwargs"] == {"goal_radius": 0.2, "reward_offset": 0.0}
    assert "scan_remat" not in now["agent"]
    older = dict(now, env_kwargs={}, agent=dict(now["agent"], scan_remat="dots", scan_unroll=1))
    assert checkpointing._diff_fingerprints(older, now) == []
    oldest = dict(older, agent=now["agent"])  # written before scan_remat existed
    assert checkpointing._diff_fingerprints(oldest, now) == []
    # written before an agent field existed: reads as its old meaning (start_context 0: the
    # training posteriors; obs_reward_shift and reward_head_shift 0: no shift; reward_head and
    # critic_head 'twohot'); a new value differs
    for field, value, expect in (("start_context", 64, "agent.start_context: checkpoint=0 now=64"),
                                 ("obs_reward_shift", 9.0,
                                  "agent.obs_reward_shift: checkpoint=0.0 now=9.0"),
                                 ("reward_head_shift", 9.0,
                                  "agent.reward_head_shift: checkpoint=0.0 now=9.0"),
                                 ("reward_head", "mse", "agent.reward_head: checkpoint='twohot' now='mse'"),
                                 ("critic_head", "mse",
                                  "agent.critic_head: checkpoint='twohot' now='mse'")):
        before = dict(now, agent={k: v for k, v in now["agent"].items() if k != field})
        assert checkpointing._diff_fingerprints(before, now) == []
        old = c.agent[field]
        c.agent[field] = value
        assert checkpointing._diff_fingerprints(before, checkpointing.fingerprint_of(c)) == [expect]
        c.agent[field] = old
    c.env_kwargs.goal_radius = 0.5
    c.agent.model_lr = 3e-4
    c.agent.scan_remat = "none"  # performance only: not a difference
    assert checkpointing._diff_fingerprints(older, checkpointing.fingerprint_of(c)) == [
        "agent.model_lr: checkpoint=0.0001 now=0.0003",
        "env_kwargs.goal_radius: checkpoint=0.2 now=0.5"]


def test_diff_fields_names_dotted_fields_and_absent_ones():
    a = {"K": 3, "agent": {"lr": 1e-4, "units": 128}}
    b = {"K": 3, "agent": {"lr": 3e-4, "depth": 2}}
    assert checkpointing.diff_fields(a, b) == {
        "agent.depth": ("<absent>", 2), "agent.lr": (1e-4, 3e-4), "agent.units": (128, "<absent>")}
    assert checkpointing.diff_fields(a, a) == {}
