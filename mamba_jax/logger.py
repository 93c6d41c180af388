"""Run-folder outputs: metrics JSONL, wandb (offline by default), learning-curve PNG.

Layout of a run folder::

    <workdir>/config.json        the full config of the run
    <workdir>/metrics.jsonl      one JSON object per logged round / evaluation
    <workdir>/learning_curve.png eval return vs real frames (per sub-episode and total)
    <workdir>/diagnostics.png    world-model and actor-critic training metrics vs updates
    <workdir>/trajectories/      meta-episode plots at each evaluation
    <workdir>/checkpoints/       Orbax checkpoints
    <workdir>/wandb/             wandb files (offline unless asked)
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any, Dict, List, Optional, Sequence

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
    """The rows of a metrics.jsonl file, or of a gzip-compressed one (``.gz``, as stored under
    ``results/``); blank lines skipped.

    Raises ValueError naming the file and line where a line is not a JSON object.
    """
    rows = []
    with (gzip.open(path, "rt") if path.endswith(".gz") else open(path)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not JSON ({e.msg}): {line[:80]!r}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {n} is not a JSON object: {line[:80]!r}")
            rows.append(row)
    return rows


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


# The panels of a run folder's diagnostics.png: what tells a stalled sparse-reward run apart from
# one that is about to learn (reward-head loss, the reward head's mean prediction at rewarded
# steps, policy entropy, imagined reward and value, returns).
DIAGNOSTIC_LOGY = ("wm/loss", "wm/reward")
DIAGNOSTIC_KEYS = ("wm/loss", "wm/reward", "wm/reward_pred_rewarded", "ac/entropy",
                   "ac/reward_mean", "ac/value_mean", "train/return", "eval/return")


def scalar_keys(rows: Sequence[Dict[str, Any]]) -> set:
    """The names of the numeric (non-bool) values logged in any of ``rows``."""
    return {k for r in rows for k, v in r.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _moving_average(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` points (fewer at the start): [N] -> [N]."""
    if window <= 1 or len(y) == 0:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def metrics_figure(runs: Sequence[List[Dict[str, Any]]], keys: Sequence[str],
                   x: str = "updates", labels: Optional[Sequence[str]] = None, title: str = "",
                   smooth: int = 1, strict: bool = True, logy: Sequence[str] = ()):
    """The figure of ``plot_metrics`` from N runs' metric rows (``read_metrics`` lists).

    Returns (matplotlib Figure, the keys drawn, in order: one panel each).
    """
    from matplotlib.figure import Figure  # no pyplot: leaves the process's backend alone

    labels = list(labels) if labels is not None else [f"run {j}" for j in range(len(runs))]
    logged = set().union(*(scalar_keys(rows) for rows in runs))
    missing = [k for k in keys if k not in logged]
    if missing and strict:
        raise ValueError(f"plot_metrics: no run logged {missing}; logged scalars: "
                         f"{sorted(logged)}")
    if x not in logged:
        raise ValueError(f"plot_metrics: no run logged the x-axis key {x!r}")
    keys = [k for k in keys if k in logged]
    ncol = min(len(keys), 4) or 1
    nrow = max(1, -(-len(keys) // ncol))
    fig = Figure(figsize=(3.2 * ncol, 2.6 * nrow))
    colours = ["tab:blue", "tab:red", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    for i, key in enumerate(keys):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        for j, (rows, label) in enumerate(zip(runs, labels)):
            pts = [r for r in rows if key in r and x in r]
            if not pts:
                continue
            colour = colours[j % len(colours)]
            xs = np.asarray([r[x] for r in pts], np.float64)
            per_seed = [r.get(key + "/per_seed") for r in pts]
            if all(isinstance(p, list) for p in per_seed):
                for s in np.asarray(per_seed, np.float64).T:
                    ax.plot(xs, _moving_average(s, smooth), color=colour, lw=0.6, alpha=0.35)
            ys = np.asarray([r[key] for r in pts], np.float64)
            ax.plot(xs, _moving_average(ys, smooth), color=colour, lw=1.2, label=label,
                    marker="o" if len(xs) < 30 else None, ms=2.5)
        if ("all" in logy or key in logy) and all(
                line.get_ydata().min() > 0 for line in ax.get_lines()):
            ax.set_yscale("log")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if len(runs) > 1 and keys:
        fig.axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig, keys


def plot_metrics(metrics_paths: Sequence[str], keys: Sequence[str], out_path: str,
                 x: str = "updates", labels: Optional[Sequence[str]] = None, title: str = "",
                 smooth: int = 1, strict: bool = True,
                 logy: Sequence[str] = ()) -> List[str]:
    """Training diagnostics: one panel per metric, one line per run, against ``x``.

    metrics_paths: N ``metrics.jsonl`` files (runs to overlay). keys: K logged scalar names
    (e.g. ``"wm/reward"``); where a run logged ``<key>/per_seed`` (a multi-seed run), each seed
    is drawn faintly under the seed mean. x: the abscissa key (``"updates"`` or ``"frames"``).
    labels: N legend labels (default: each file's folder name). smooth: trailing moving-average
    window in logged points (1 = raw). strict: a key that no run logged raises ValueError naming
    it and the keys that exist; with strict=False such keys are left out (a run folder's own
    plot, where the first round may not have every key yet). logy: keys drawn on a log y-axis
    (``("all",)`` for every panel), where all their values are positive (losses spanning
    decades).

    Returns the keys drawn. Writes the PNG atomically (a temporary file, then a rename).
    """
    if not metrics_paths:
        raise ValueError("plot_metrics: no metrics files given")
    if labels is not None and len(labels) != len(metrics_paths):
        raise ValueError(f"plot_metrics: {len(labels)} labels for {len(metrics_paths)} runs")
    runs = []
    for path in metrics_paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"plot_metrics: no metrics file at {path}")
        runs.append(read_metrics(path))
    labels = list(labels) if labels is not None else [
        os.path.basename(os.path.dirname(os.path.abspath(p))) for p in metrics_paths]
    fig, drawn = metrics_figure(runs, keys, x=x, labels=labels, title=title, smooth=smooth,
                                strict=strict, logy=logy)
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, out_path)
    return drawn
