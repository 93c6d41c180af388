"""Direct tests of small public helpers that the end-to-end tests exercise only indirectly:
the trainer's schedule arithmetic and task sets, CPU feature detection, checkpoint meta files,
metrics files, learning-curve and diagnostics plots, the environment registry, and the point
robot's action cleaning and counter-based wind noise."""
import gzip
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs import core as envs_core
from envs.point_robot import PointRobot, clean_action, counter_normals
from experiments.configs import point_robot, tiny
from mamba_jax import checkpointing, logger, trainer


# -- trainer: schedule arithmetic ----------------------------------------------------------------
def test_schedule_helpers_on_the_official_point_robot_config():
    setup = trainer.make_setup(point_robot.get_config())
    # 1M real frames: 25 prefill meta-episodes (7,500 frames), then rounds of 10 x 300 frames
    assert setup.prefill == 25 and setup.updates_per_round == 10
    assert trainer.num_rounds_for(setup) == 331  # ceil((1e6 - 7500) / 3000): 3,310 updates
    assert trainer.eval_every_rounds(setup) == 20  # every 200 collected meta-episodes
    assert trainer.checkpoint_every_rounds(setup) == 20  # every 200 updates


def test_schedule_helpers_edge_cases():
    c = tiny.get_config()
    c.eval_every_meta_episodes = 0  # evaluation off
    c.checkpoint_every_updates = 1
    c.total_frames = 0  # prefill alone covers the budget
    setup = trainer.make_setup(c)
    assert trainer.eval_every_rounds(setup) == 0
    assert trainer.checkpoint_every_rounds(setup) == 1
    assert trainer.num_rounds_for(setup) == 0


def test_sample_tasks_is_a_fixed_function_of_the_seed():
    setup = trainer.make_setup(tiny.get_config())
    a, b = trainer.sample_tasks(setup, 7, 5), trainer.sample_tasks(setup, 7, 5)
    c = trainer.sample_tasks(setup, 8, 5)
    for x, y, z in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(c)):
        assert x.shape[0] == 5
        np.testing.assert_array_equal(x, y)
        assert not np.array_equal(x, z)


def test_to_host_gives_numpy_arrays():
    out = trainer.to_host({'a': jnp.arange(3), 'b': (jnp.ones(2),)})
    assert isinstance(out['a'], np.ndarray) and isinstance(out['b'][0], np.ndarray)
    np.testing.assert_array_equal(out['a'], [0, 1, 2])


@pytest.mark.parametrize('flags, expected', [
    ("flags\t\t: fpu sse avx512f avx512_bf16 avx512vl", True),
    ("flags\t\t: fpu sse avx2 amx_bf16", True),
    ("Features\t: fp asimd bf16 sve", True),
    ("flags\t\t: fpu sse avx2 avx512f", False),
])
def test_cpu_has_bf16_reads_the_cpu_flags(tmp_path, flags, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\n{flags}\n")
    assert trainer.cpu_has_bf16(str(path)) is expected


def test_cpu_has_bf16_is_false_where_flags_cannot_be_read(tmp_path):
    assert trainer.cpu_has_bf16(str(tmp_path / "missing")) is False


# -- checkpoint meta -----------------------------------------------------------------------------
def test_save_then_read_meta(tmp_path):
    manager = checkpointing.make_manager(str(tmp_path / "ckpt"), keep=2)
    with pytest.raises(checkpointing.CheckpointError, match="no checkpoint found"):
        checkpointing.read_meta(manager)
    state = {'w': jnp.arange(4.0), 'step': jnp.int32(3)}
    checkpointing.save(manager, 3, state, {'rounds': 3, 'note': 'first'})
    checkpointing.save(manager, 5, state, {'rounds': 5})
    latest = checkpointing.read_meta(manager)
    assert latest['rounds'] == 5 and latest['format_version'] == checkpointing.FORMAT_VERSION
    assert checkpointing.read_meta(manager, 3)['note'] == 'first'
    assert sorted(os.listdir(tmp_path / "ckpt")) == ['3', '5']


# -- metrics files and plots ---------------------------------------------------------------------
def test_read_metrics_and_plot_learning_curve(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"frames": 100, "eval/return": 1.0, "eval/return_sub0": 0.5, "eval/return_sub1": 0.5},
            {"frames": 200, "fps": 30.0},
            {"frames": 300, "eval/return": 4.0, "eval/return_sub0": 1.0, "eval/return_sub1": 3.0}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")  # a blank line is skipped
    assert logger.read_metrics(str(path)) == rows
    # the gzip-compressed copies stored under results/ read the same
    with gzip.open(tmp_path / "metrics.jsonl.gz", "wt") as f:
        f.write(path.read_text())
    assert logger.read_metrics(str(tmp_path / "metrics.jsonl.gz")) == rows
    out = str(tmp_path / "curve.png")
    logger.plot_learning_curve(str(path), out, title="t", reference={"scripted": 5.0})
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(out + ".tmp.png")
    # no evaluation rows yet (first round of a run): still an (empty) figure, no error
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"frames": 100, "fps": 1.0}) + "\n")
    logger.plot_learning_curve(str(empty), str(tmp_path / "empty.png"))
    assert os.path.getsize(tmp_path / "empty.png") > 0
    # a file that is not metrics (e.g. a run folder's log.txt) is named with its line
    (tmp_path / "log.txt").write_text("\ncompute dtype: float32\n")
    with pytest.raises(ValueError, match=r"log.txt: line 2 is not JSON"):
        logger.read_metrics(str(tmp_path / "log.txt"))
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ValueError, match="line 1 is not a JSON object"):
        logger.read_metrics(str(tmp_path / "list.jsonl"))


def _write_metrics(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_moving_average_is_a_trailing_mean():
    y = np.array([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(logger._moving_average(y, 2), [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(logger._moving_average(y, 1), y)
    np.testing.assert_allclose(logger._moving_average(y, 10), [1.0, 2.0, 3.0, 4.0])


def test_plot_metrics_overlays_runs_and_seeds(tmp_path):
    assert logger.scalar_keys([{"a": 1, "b": True, "c": [1.0]}, {"d": 2.5, "e": "x"}]) == {"a", "d"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _write_metrics(tmp_path / "a" / "metrics.jsonl", [
        {"updates": u, "frames": 10 * u, "wm/reward": 1.0 / u, "ac/entropy": 2.8,
         "flag": True} for u in range(1, 6)] + [{"updates": 5, "eval/return": 1.0}])
    b = _write_metrics(tmp_path / "b" / "metrics.jsonl", [
        {"updates": u, "wm/reward": 2.0 / u, "wm/reward/per_seed": [1.0 / u, 3.0 / u]}
        for u in range(1, 4)])
    out = str(tmp_path / "d.png")
    drawn = logger.plot_metrics([a, b], ["wm/reward", "ac/entropy", "eval/return"], out,
                                smooth=2, title="t")
    assert drawn == ["wm/reward", "ac/entropy", "eval/return"]
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(out + ".tmp.png")
    # a key no run logged: strict names it and what exists; non-strict leaves it out
    with pytest.raises(ValueError, match=r"no run logged \['wm/nope'\].*wm/reward"):
        logger.plot_metrics([a], ["wm/nope"], out)
    assert logger.plot_metrics([a], ["wm/nope", "ac/entropy"], out, strict=False) == ["ac/entropy"]
    # log y-axis where asked and all values are positive; a panel with a zero stays linear
    z = [{"updates": 1, "wm/reward": 0.0, "wm/loss": 2.0},
         {"updates": 2, "wm/reward": 1.0, "wm/loss": 1.0}]
    fig, drawn = logger.metrics_figure([z], ["wm/reward", "wm/loss"], logy=("all",))
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "log"]
    fig, _ = logger.metrics_figure([z], ["wm/reward", "wm/loss"], logy=("wm/reward",))
    assert [ax.get_yscale() for ax in fig.axes] == ["linear", "linear"]
    # per-seed rows: one faint line per seed under the mean; default labels name the runs
    fig, _ = logger.metrics_figure([logger.read_metrics(b)], ["wm/reward"])
    assert len(fig.axes[0].get_lines()) == 3
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), [3.0, 1.5, 1.0])
    assert fig.axes[0].get_lines()[-1].get_label() == "run 0"
    with pytest.raises(ValueError, match="x-axis key 'steps'"):
        logger.plot_metrics([a], ["ac/entropy"], out, x="steps")
    with pytest.raises(ValueError, match="1 labels for 2 runs"):
        logger.plot_metrics([a, b], ["wm/reward"], out, labels=["only"])
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        logger.plot_metrics([str(tmp_path / "missing.jsonl")], ["wm/reward"], out)
    # booleans are not plottable metrics
    with pytest.raises(ValueError, match="flag"):
        logger.plot_metrics([a], ["flag"], out)


def test_plot_metrics_cli(tmp_path, capsys):
    from experiments import plot_metrics as cli

    run = tmp_path / "run"
    run.mkdir()
    _write_metrics(run / "metrics.jsonl", [{"updates": u, "wm/loss": 5.0 - u, "ac/entropy": 2.0}
                                           for u in range(3)])
    assert cli.main([f"--runs={run}", "--list"]) == 0
    assert "ac/entropy updates wm/loss" in capsys.readouterr().out
    out = tmp_path / "figs" / "diag.png"
    # default keys: the diagnostics that exist in this run
    assert cli.main([f"--runs={run}", f"--out={out}"]) == 0
    assert "2 panels: wm/loss, ac/entropy" in capsys.readouterr().out and out.exists()
    assert cli.main([f"--runs={run}", "--keys=wm/kl", f"--out={out}"]) == 2
    assert "no run logged ['wm/kl']" in capsys.readouterr().err
    assert cli.main([f"--runs={tmp_path / 'nowhere'}", f"--out={out}"]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


# -- environment registry ------------------------------------------------------------------------
def test_register_and_check_options():
    name = "point_robot_test_alias"
    envs_core.register(name, PointRobot)
    try:
        assert name in envs.registered_names()
        with pytest.raises(ValueError, match="already registered"):
            envs_core.register(name, PointRobot)
        envs_core.check_options(name, {"goal_radius": 0.3})  # a valid option passes
        with pytest.raises(ValueError, match=r"no option\(s\) \['radius'\].*goal_radius"):
            envs_core.check_options(name, {"radius": 0.3})
        assert envs.make(name, goal_radius=0.3).goal_radius == 0.3
    finally:
        envs_core._REGISTRY.pop(name)
    with pytest.raises(ValueError, match="unknown environment"):
        envs_core.check_options(name, {})


# -- point robot helpers -------------------------------------------------------------------------
def test_clean_action():
    a = jnp.array([jnp.nan, jnp.inf, -jnp.inf, 2.5, -0.3])
    np.testing.assert_allclose(clean_action(a), [0.0, 1.0, -1.0, 1.0, -0.3], rtol=1e-6)


def test_counter_normals_are_standard_normal_and_deterministic():
    key = jax.random.key(0)
    draws = np.asarray(jax.vmap(lambda n: counter_normals(key, n, 2))(jnp.arange(50000,
                                                                               dtype=jnp.uint32)))
    assert draws.shape == (50000, 2) and np.all(np.isfinite(draws))
    np.testing.assert_allclose(draws.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(draws.std(0), 1.0, atol=0.02)
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.02
    assert abs(np.corrcoef(draws[:-1, 0], draws[1:, 0])[0, 1]) < 0.02  # consecutive steps
    np.testing.assert_array_equal(counter_normals(key, jnp.uint32(7), 2), draws[7])
    raw = jax.random.PRNGKey(0)  # raw uint32 keys work too
    assert counter_normals(raw, jnp.uint32(7), 2).shape == (2,)
