"""What every benchmark script records about the machine, and how it writes its JSON."""
from __future__ import annotations

import json
import os
import platform

import jax


def machine_info() -> dict:
    """Backend, devices, cores, platform and versions, for the JSON of a benchmark run."""
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def write_json(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
