"""Run-folder outputs: metrics JSONL, wandb (offline by default), learning-curve PNG.

Layout of a run folder::

    <workdir>/config.json        the full config of the run
    <workdir>/metrics.jsonl      one JSON object per logged round / evaluation
    <workdir>/learning_curve.png eval return vs real frames (per sub-episode and total)
    <workdir>/trajectories/      meta-episode plots at each evaluation
    <workdir>/checkpoints/       Orbax checkpoints
    <workdir>/wandb/             wandb files (offline unless asked)
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np


class RunLogger:
    """Writes metrics to JSONL and (optionally) wandb. Never fails because of the network."""

    def __init__(self, workdir: str, config: Dict[str, Any], wandb_mode: str = "offline",
                 project: str = "mamba-jax", resume: bool = False, write: bool = True):
        self.workdir = workdir
        self.write = write
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._wandb = None
        self.wandb_error: Optional[str] = None
        if wandb_mode != "disabled":
            if wandb_mode == "online" and not _wandb_credentials():
                # wandb would otherwise prompt or fail; keep the files locally instead.
                self.wandb_error = "WANDB_API_KEY not set: logging wandb offline"
                wandb_mode = "offline"
            try:
                import wandb

                os.environ.setdefault("WANDB_SILENT", "true")
                run_id_file = os.path.join(workdir, "wandb_run_id")
                run_id = open(run_id_file).read().strip() if (
                    resume and os.path.exists(run_id_file)) else None
                self._wandb = wandb.init(project=project, dir=workdir, mode=wandb_mode,
                                         config=config, id=run_id, resume="allow" if run_id else None,
                                         settings=wandb.Settings(console="off"))
                with open(run_id_file, "w") as f:
                    f.write(self._wandb.id)
            except Exception as e:  # wandb must never stop a training run
                self.wandb_error = f"wandb disabled: {type(e).__name__}: {e}"
                self._wandb = None

    def log(self, record: Dict[str, Any]) -> None:
        record = {k: _plain(v) for k, v in record.items()}
        if not self.write:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            try:
                self._wandb.log(record, step=int(record.get("frames", 0)))
            except Exception as e:
                self.wandb_error = f"wandb log failed: {e}"

    def close(self) -> None:
        if self._wandb is not None:
            try:
                self._wandb.finish()
            except Exception:
                pass


def _wandb_credentials() -> bool:
    """An API key in the environment or from ``wandb login`` (~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def _plain(v):
    if isinstance(v, (np.ndarray, np.generic)):
        return v.tolist()
    if hasattr(v, "tolist"):
        return np.asarray(v).tolist()
    return v


def read_metrics(path: str) -> List[Dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_learning_curve(metrics_path: str, out_path: str, title: str = "",
                        reference: Optional[Dict[str, float]] = None) -> None:
    """Eval return per meta-episode (and per sub-episode) against real env frames."""
    from matplotlib.figure import Figure  # no pyplot: leaves the process's backend alone

    rows = [r for r in read_metrics(metrics_path) if "eval/return" in r]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    if rows:
        x = [r["frames"] for r in rows]
        ax.plot(x, [r["eval/return"] for r in rows], "k-o", label="meta-episode", ms=3)
        k = 0
        colours = ["tab:red", "tab:green", "tab:blue", "tab:orange", "tab:purple"]
        while f"eval/return_sub{k}" in rows[0]:
            ax.plot(x, [r[f"eval/return_sub{k}"] for r in rows], "--", color=colours[k % 5],
                    label=f"sub-episode {k + 1}")
            k += 1
    for name, value in (reference or {}).items():
        ax.axhline(value, color="gray", ls=":", lw=1)
        ax.text(ax.get_xlim()[0], value, f" {name}", va="bottom", fontsize=7, color="gray")
    ax.set_xlabel("real environment frames")
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing to label before the first evaluation
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out_path)
