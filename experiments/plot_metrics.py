"""Plot logged training metrics of one or more runs, one panel per metric.

    python -m experiments.plot_metrics --runs=runs/a,runs/b \\
        [--keys=wm/reward,ac/entropy,ac/value_mean] [--x=updates] [--smooth=5] \\
        [--labels=a,b] [--logy=wm/reward|all] [--out=results/diagnostics.png]
    python -m experiments.plot_metrics --runs=runs/a --list   # which metrics a run logged

``--runs`` takes run folders (with a ``metrics.jsonl``) or metrics files (``.jsonl``, or the
``.jsonl.gz`` copies under ``results/``). Without ``--keys`` it draws the run folder's default
diagnostics (``mamba_jax.logger.DIAGNOSTIC_KEYS``). Multi-seed runs (``--config.num_seeds``)
draw each seed faintly under the seed mean.
"""
from __future__ import annotations

import argparse
import os
import sys

from mamba_jax import logger as logger_lib


def metrics_file(run: str) -> str:
    """A run folder or a metrics file (metrics.jsonl, or a .jsonl.gz copy) -> its path.

    Raises FileNotFoundError naming ``run`` where there is no such file."""
    path = os.path.join(run, "metrics.jsonl") if os.path.isdir(run) else run
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no metrics.jsonl at {run!r} (give a run folder or the file)")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True,
                   help="comma-separated run folders or metrics files (.jsonl or .jsonl.gz)")
    p.add_argument("--keys", default="", help="comma-separated metric names (default: diagnostics)")
    p.add_argument("--x", default="updates", help="x-axis key: updates or frames")
    p.add_argument("--labels", default="", help="comma-separated legend labels, one per run")
    p.add_argument("--smooth", type=int, default=1, help="trailing moving-average window (points)")
    p.add_argument("--logy", default=None,
                   help="comma-separated keys on a log y-axis, or 'all' (default: losses when "
                        "--keys is not given, else none)")
    p.add_argument("--title", default="")
    p.add_argument("--out", default="diagnostics.png")
    p.add_argument("--list", action="store_true", help="print the logged scalar metrics and exit")
    a = p.parse_args(argv)
    try:
        paths = [metrics_file(r) for r in a.runs.split(",") if r]
        if a.list:
            for path in paths:
                keys = sorted(logger_lib.scalar_keys(logger_lib.read_metrics(path)))
                print(f"{path}: {' '.join(keys)}")
            return 0
        keys = [k for k in a.keys.split(",") if k] or list(logger_lib.DIAGNOSTIC_KEYS)
        labels = [s for s in a.labels.split(",") if s] or None
        if a.logy is None:
            logy = () if a.keys else logger_lib.DIAGNOSTIC_LOGY
        else:
            logy = tuple(k for k in a.logy.split(",") if k)
        out_dir = os.path.dirname(os.path.abspath(a.out))
        os.makedirs(out_dir, exist_ok=True)
        drawn = logger_lib.plot_metrics(paths, keys, a.out, x=a.x, labels=labels,
                                        title=a.title, smooth=a.smooth, strict=bool(a.keys),
                                        logy=logy)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} ({len(drawn)} panels: {', '.join(drawn)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
