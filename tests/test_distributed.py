"""Two processes on localhost with ``jax.distributed``: the CLI's multi-host path end to end."""
import json
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_process_run_completes_updates(tmp_path):
    port = _free_port()
    workdir = str(tmp_path / "dist")
    env = dict(os.environ, JAX_PLATFORMS="cpu", WANDB_MODE="offline")
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "force_host_platform_device_count" not in f)  # 1 device each
    procs = [subprocess.Popen(
        [sys.executable, "-m", "experiments.train", "--config=experiments/configs/tiny.py",
         "--no_progress", f"--workdir={workdir}", "--distributed",
         f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "done:" in out
    summary = json.load(open(os.path.join(workdir, "summary.json")))  # written by process 0 only
    assert summary["finished"] and summary["updates"] == 6
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert sum("wm/loss" in r for r in rows) == 3  # one writer: no duplicated lines
    assert os.listdir(os.path.join(workdir, "checkpoints"))
