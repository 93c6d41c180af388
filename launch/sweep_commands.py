"""Expand a wandb sweep YAML into the exact command lines a ``wandb agent`` would run (dry run).

    python launch/sweep_commands.py launch/sweeps/point_robot.yaml -n 5 --seed 0

* ``method: grid``: the cartesian product of every parameter's ``values`` (or ``value``), in the
  YAML's parameter order (the first parameter varies slowest); ``-n`` caps the count.
* ``method: random`` / ``bayes``: ``-n`` independent draws from the parameter distributions with
  ``--seed`` (bayes proposals depend on earlier results, so a dry run can only show its prior).

The command is built like the agent builds it (``wandb/wandb_agent.py``): the YAML's ``command``
list (default ``${env} ${interpreter} ${program} ${args}``) with ``${args}`` -> ``--name=value``,
``${args_no_hyphens}`` -> ``name=value``, ``${args_no_boolean_flags}``, ``${env}`` ->
``/usr/bin/env``, ``${interpreter}`` -> ``python``, ``${program}`` -> the ``program`` key, and
``${envvar:NAME}`` -> ``$NAME`` from the environment. Values print as Python's ``str`` does, as
the agent does. Parameters named ``config.<field>`` therefore reach ``experiments.train`` as
``--config.<field>=<value>`` overrides.
"""
from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import shlex
import sys
from typing import Any, Dict, List, Optional

import numpy as np
import yaml

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")


def load(path: str) -> Dict[str, Any]:
    """Reads a sweep YAML and checks the keys this tool (and wandb) need."""
    with open(path) as f:
        sweep = yaml.safe_load(f)
    if not isinstance(sweep, dict):
        raise ValueError(f"{path}: a sweep file must be a mapping")
    if sweep.get("method") not in ("grid", "random", "bayes"):
        raise ValueError(f"{path}: method must be grid, random or bayes, got {sweep.get('method')!r}")
    params = sweep.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{path}: 'parameters' must be a non-empty mapping")
    for name, spec in params.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: parameter {name!r} must be a mapping, got {spec!r}")
        if "parameters" in spec:
            raise ValueError(f"{path}: nested parameter {name!r} is not supported; use dotted names")
        distribution(spec)  # raises on anything unsupported
    if sweep["method"] == "bayes" and not (sweep.get("metric") or {}).get("name"):
        raise ValueError(f"{path}: a bayes sweep needs metric.name")
    return sweep


def distribution(spec: Dict[str, Any]) -> str:
    """The distribution of one parameter, inferred as wandb does when it is not given."""
    if "distribution" in spec:
        d = spec["distribution"]
    elif "values" in spec:
        d = "categorical"
    elif "value" in spec:
        d = "constant"
    elif "min" in spec and "max" in spec:
        both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                       for k in ("min", "max"))
        d = "int_uniform" if both_int else "uniform"
    else:
        raise ValueError(f"cannot infer the distribution of {spec!r}")
    known = {"constant", "categorical", "uniform", "int_uniform", "log_uniform_values",
             "q_uniform", "q_log_uniform_values", "normal", "log_normal"}
    if d not in known:
        raise ValueError(f"unsupported distribution {d!r}; supported: {sorted(known)}")
    return d


def _draw(spec: Dict[str, Any], rng: np.random.Generator) -> Any:
    d = distribution(spec)
    if d == "constant":
        return spec["value"]
    if d == "categorical":
        values = spec["values"]
        p = spec.get("probabilities")
        return values[int(rng.choice(len(values), p=p))]
    if d == "uniform":
        return float(rng.uniform(spec["min"], spec["max"]))
    if d == "int_uniform":
        return int(rng.integers(spec["min"], spec["max"], endpoint=True))
    if d == "log_uniform_values":
        return float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))
    if d == "q_uniform":
        q = spec.get("q", 1)
        return float(round(rng.uniform(spec["min"], spec["max"]) / q) * q)
    if d == "q_log_uniform_values":
        q = spec.get("q", 1)
        v = math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"])))
        return float(round(v / q) * q)
    if d == "normal":
        return float(rng.normal(spec.get("mu", 0.0), spec.get("sigma", 1.0)))
    return float(math.exp(rng.normal(spec.get("mu", 0.0), spec.get("sigma", 1.0))))  # log_normal


def parameter_sets(sweep: Dict[str, Any], n: Optional[int] = None, seed: int = 0) -> List[Dict[str, Any]]:
    """Grid: the cartesian product (first ``n``). Random/bayes: ``n`` (default 1) seeded draws."""
    params = sweep["parameters"]
    if sweep["method"] == "grid":
        axes = []
        for name, spec in params.items():
            d = distribution(spec)
            if d not in ("categorical", "constant"):
                raise ValueError(f"grid sweeps need 'values' or 'value'; {name!r} has {d}")
            axes.append(spec["values"] if d == "categorical" else [spec["value"]])
        combos = [dict(zip(params, combo)) for combo in itertools.product(*axes)]
        return combos if n is None else combos[:n]
    rng = np.random.default_rng(seed)
    return [{name: _draw(spec, rng) for name, spec in params.items()} for _ in range(n or 1)]


def command_line(sweep: Dict[str, Any], values: Dict[str, Any]) -> List[str]:
    """The argv the wandb agent would run for one parameter set."""
    flags = [f"{k}={v}" for k, v in values.items()]
    macros = {
        "args": ["--" + f for f in flags],
        "args_no_hyphens": flags,
        "args_no_boolean_flags": [f"--{k}" if v is True else f"--{k}={v}"
                                  for k, v in values.items() if v is not False],
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [sweep["program"]] if "program" in sweep else [],
    }
    argv: List[str] = []
    for chunk in sweep.get("command") or DEFAULT_COMMAND:
        chunk = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(chunk))
        if chunk.startswith("${") and chunk.endswith("}"):
            name = chunk[2:-1]
            if name not in macros:
                raise ValueError(f"unsupported command macro {chunk}")
            argv += macros[name]
        else:
            argv.append(chunk)
    return argv


def expand(path: str, n: Optional[int] = None, seed: int = 0) -> List[List[str]]:
    """Command lines (argv lists) for the first ``n`` grid points or ``n`` random draws."""
    sweep = load(path)
    return [command_line(sweep, v) for v in parameter_sets(sweep, n, seed)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweep", help="sweep YAML, e.g. launch/sweeps/point_robot.yaml")
    ap.add_argument("-n", "--num", type=int, default=None,
                    help="grid: at most this many; random/bayes: this many draws (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed for random/bayes draws")
    args = ap.parse_args(argv)
    try:
        for cmd in expand(args.sweep, args.num, args.seed):
            print(shlex.join(cmd))
    except (OSError, ValueError, yaml.YAMLError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
