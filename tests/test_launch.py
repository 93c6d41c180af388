"""Sweep files, their dry-run expansion, one sweep run end to end, and the cluster launchers."""
import glob
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEPS = sorted(glob.glob(os.path.join(REPO, "launch", "sweeps", "*.yaml")))
SCRIPTS = [os.path.join(REPO, "launch", n) for n in ("tpu_pod.sh", "gpu_node.sh")]


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sc = _module(os.path.join(REPO, "launch", "sweep_commands.py"), "sweep_commands")


def _config_file(argv):
    """The --config=<file> a sweep command trains with (inside the bash -c script or not)."""
    found = re.findall(r"--config=(\S+?\.py)\b", " ".join(argv))
    assert len(found) == 1, argv
    return found[0]


def _load_config(path):
    return _module(os.path.join(REPO, path), "sweep_cfg_" + os.path.basename(path)[:-3]).get_config()


def test_sweep_files_exist():
    names = {os.path.basename(p) for p in SWEEPS}
    assert {"point_robot.yaml", "tiny.yaml"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=os.path.basename)
def test_sweep_keys_are_real_config_fields(path):
    raw = yaml.safe_load(open(path))
    sweep = sc.load(path)
    assert raw["metric"]["name"] == "eval/return"  # what run.py logs to wandb
    argv = sc.command_line(sweep, {})
    assert "experiments.train" in " ".join(argv) and argv[-1] != "${args}"
    config = _load_config(_config_file(argv))
    for name, spec in sweep["parameters"].items():
        assert name.startswith("config."), name
        node = config
        for part in name.split(".")[1:]:
            assert part in node, f"{os.path.basename(path)}: {name}: no field {part!r}"
            node = node[part]
        # every value the sweep can produce must fit the field's type (absl parses by it)
        d = sc.distribution(spec)
        candidates = {"categorical": spec.get("values"), "constant": [spec.get("value")]}.get(
            d, [spec.get("min"), spec.get("max")])
        for v in candidates:
            if isinstance(node, bool):
                assert isinstance(v, bool), (name, v)
            elif isinstance(node, int):
                assert isinstance(v, int) and not isinstance(v, bool), (name, v)
            elif isinstance(node, float):
                assert isinstance(v, (int, float)) and not isinstance(v, bool), (name, v)
            else:
                assert isinstance(v, type(node)), (name, v)


def test_grid_expansion_is_the_cartesian_product():
    path = os.path.join(REPO, "launch", "sweeps", "tiny.yaml")
    sweep = sc.load(path)
    sets = sc.parameter_sets(sweep)
    sizes = [len(s.get("values", [None])) for s in sweep["parameters"].values()]
    assert len(sets) == int(__import__("math").prod(sizes)) == 4
    assert len({json.dumps(s, sort_keys=True) for s in sets}) == len(sets)
    assert sc.parameter_sets(sweep, n=2) == sets[:2]
    for values, argv in zip(sets, sc.expand(path)):
        for k, v in values.items():
            assert f"--{k}={v}" in argv
        assert shlex.split(shlex.join(argv)) == argv


def test_random_draws_are_seeded_and_in_range():
    sweep = sc.load(os.path.join(REPO, "launch", "sweeps", "point_robot.yaml"))
    a = sc.parameter_sets(sweep, n=20, seed=3)
    assert a == sc.parameter_sets(sweep, n=20, seed=3) != sc.parameter_sets(sweep, n=20, seed=4)
    for values in a:
        for k, v in values.items():
            spec = sweep["parameters"][k]
            if "values" in spec:
                assert v in spec["values"]
            else:
                assert spec["min"] <= v <= spec["max"]
    lrs = [v["config.agent.model_lr"] for v in a]
    assert len(set(lrs)) == len(lrs)


def test_cli_prints_one_command_per_line():
    proc = subprocess.run([sys.executable, "launch/sweep_commands.py", "launch/sweeps/point_robot.yaml",
                           "-n", "3", "--seed", "1"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        argv = shlex.split(line)
        assert "--config.agent.model_lr=" in line and "--config.train_ratio=" in line
        assert argv[:2] == ["bash", "-c"] and "--config=experiments/configs/point_robot.py" in argv[2]


def test_one_sweep_run_end_to_end(tmp_path):
    """The first grid point of the tiny sweep, exactly as the agent would launch it (offline)."""
    path = os.path.join(REPO, "launch", "sweeps", "tiny.yaml")
    values = sc.parameter_sets(sc.load(path))[0]
    argv = sc.expand(path, n=1)[0]
    env = dict(os.environ, MAMBA_SWEEP_ROOT=str(tmp_path), MAMBA_WANDB_MODE="offline",
               WANDB_RUN_ID="sweeptest0", WANDB_MODE="offline",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("WANDB_SWEEP_ID", None)
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    workdir = tmp_path / "local" / "sweeptest0"
    assert workdir.is_dir(), list(tmp_path.rglob("*"))[:20]
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        assert (workdir / name).stat().st_size > 0, name
    saved = json.load(open(workdir / "config.json"))
    tiny = _load_config("experiments/configs/tiny.py")
    for k, v in values.items():
        node, default = saved, tiny
        for part in k.split(".")[1:]:
            node, default = node[part], default[part]
        assert node == pytest.approx(v), (k, node, v)
        assert k == "config.train_ratio" or node != pytest.approx(default), f"{k} equals the default"
    assert saved["wandb_mode"] == "offline"
    assert glob.glob(str(workdir / "wandb" / "*")), "no wandb files"


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_shellcheck(script):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    proc = subprocess.run(["shellcheck", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def _dry(script, args, tmp_path, **env):
    """Runs a launcher with --dry-run and a fake gcloud/ssh/mpirun that records any call."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    for tool in ("gcloud", "ssh", "mpirun"):
        (fake / tool).write_text(f"#!/bin/sh\necho called >> {tmp_path}/called\n")
        (fake / tool).chmod(0o755)
    e = dict(os.environ, PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", **env)
    proc = subprocess.run(["bash", script, "--dry-run"] + args, cwd=REPO, capture_output=True,
                          text=True, env=e, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "called").exists(), "--dry-run ran a command"
    return proc.stdout.strip().splitlines()


def test_tpu_pod_dry_run(tmp_path):
    lines = _dry(SCRIPTS[0], ["--workdir=gs://bucket/pr_s0", "--setup=https://example.com/x.git",
                              "--", "--config.seed=3"], tmp_path, TPU_NAME="pod", ZONE="us-z1")
    assert len(lines) == 2  # install, then train
    for line in lines:
        argv = shlex.split(line)
        assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "pod"]
        assert "--zone=us-z1" in argv and "--worker=all" in argv
    train = shlex.split(lines[1])[-1]
    assert train.startswith("--command=")
    assert "--distributed" in train and "--workdir=gs://bucket/pr_s0" in train
    assert "-m experiments.train" in train and train.endswith("--config.seed=3")
    assert "jax[tpu]==" in lines[0]


def test_tpu_pod_refuses_relative_workdir_and_missing_name(tmp_path):
    for args, env in ((["--workdir=runs/x", "--tpu=p", "--zone=z"], {}),
                      (["--workdir=gs://b/x", "--zone=z"], {"TPU_NAME": ""})):
        e = dict(os.environ, **env)
        proc = subprocess.run(["bash", SCRIPTS[0], "--dry-run"] + args, capture_output=True,
                              text=True, env=e, cwd=REPO)
        assert proc.returncode == 2 and "usage" in proc.stderr


def test_gpu_node_dry_run(tmp_path):
    single = _dry(SCRIPTS[1], ["--workdir=runs/x", "--gpus=0,1"], tmp_path)
    assert single == ["env CUDA_VISIBLE_DEVICES=0,1 python -m experiments.train "
                      "--config=experiments/configs/point_robot.py --workdir=runs/x --no_progress"]
    multi = _dry(SCRIPTS[1], ["--workdir=gs://b/x", "--procs=4", "--host=node7", "--",
                              "--config.seed=1"], tmp_path)
    assert len(multi) == 1
    argv = shlex.split(multi[0])
    assert argv[:2] == ["ssh", "node7"]
    assert "mpirun -np 4" in argv[2] and "--distributed" in argv[2]
    assert argv[2].endswith("--config.seed=1")


@pytest.mark.parametrize("script", SCRIPTS, ids=os.path.basename)
def test_help_and_strict_mode(script):
    proc = subprocess.run(["bash", script, "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("usage:")
    assert "set -euo pipefail" in open(script).read()
    assert os.access(script, os.X_OK)


def _gpu_reproduce(tmp_path, stages, **env):
    """Runs launch/gpu_reproduce.sh from an empty folder (no .whl/: nothing to install)."""
    full = dict(os.environ, PY=sys.executable, STAGES=stages, BUDGET="120",
                OUT=str(tmp_path / "out"), JAX_COMPILATION_CACHE_DIR=str(tmp_path / "xla"), **env)
    return subprocess.run(["bash", os.path.join(REPO, "launch", "gpu_reproduce.sh")],
                          cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300)


def test_gpu_reproduce_brings_the_compilation_cache_back_and_unpacks_a_carried_one(tmp_path):
    # a cache from an "earlier lease", packed the way the script packs it
    old = tmp_path / "old_cache"
    old.mkdir()
    payload = os.urandom(4096)
    (old / "jit_update-abc-cache").write_bytes(payload)
    carried = tmp_path / "carried"
    carried.mkdir()
    subprocess.run(f"tar czf - -C {old} . | split -b 15M -a 1 - {carried}/xla_cache.tgz.part",
                   shell=True, check=True)
    p = _gpu_reproduce(tmp_path, " ", CACHE_IN=str(carried))  # no stages: setup and packing only
    assert p.returncode == 0, p.stdout + p.stderr
    assert "unpacked 1 cached programs" in p.stdout, p.stdout
    assert (tmp_path / "xla" / "jit_update-abc-cache").read_bytes() == payload
    pieces = sorted((tmp_path / "out").glob("xla_cache.tgz.part*"))
    assert [x.name for x in pieces] == ["xla_cache.tgz.parta"]
    back = tmp_path / "back"
    back.mkdir()
    subprocess.run(f"cat {pieces[0]} | tar xzf - -C {back}", shell=True, check=True)
    assert (back / "jit_update-abc-cache").read_bytes() == payload
    assert (tmp_path / "out" / "gpu_results.tgz").exists()


def test_gpu_reproduce_leaves_out_a_cache_too_large_to_bring_back(tmp_path):
    old = tmp_path / "old_cache"
    old.mkdir()
    (old / "big-cache").write_bytes(os.urandom(2 * 1024 * 1024))  # incompressible 2 MiB
    carried = tmp_path / "carried"
    carried.mkdir()
    subprocess.run(f"tar czf - -C {old} . | split -b 15M -a 1 - {carried}/xla_cache.tgz.part",
                   shell=True, check=True)
    p = _gpu_reproduce(tmp_path, " ", CACHE_IN=str(carried), OUT_LIMIT_MIB="1")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "compilation cache too large to bring back" in p.stdout, p.stdout
    assert not list((tmp_path / "out").glob("xla_cache.tgz.part*"))
    assert (tmp_path / "out" / "gpu_results.tgz").exists()  # the results still come back


def test_gpu_reproduce_rejects_an_unknown_stage(tmp_path):
    p = _gpu_reproduce(tmp_path, "nosuchstage")
    assert p.returncode == 2 and "unknown stage nosuchstage" in p.stdout, p.stdout + p.stderr
