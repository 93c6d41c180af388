"""Orbax checkpoints of the whole run state (parameters, optimiser, replay, counters, RNG).

Layout: ``<workdir>/checkpoints/<update>/{state,meta}`` written by ``ocp.CheckpointManager``.
``meta`` is JSON: counters for humans plus a fingerprint of every config field that changes array
shapes, so an incompatible resume fails with a message naming the fields instead of an opaque
shape error. Failures never delete or overwrite existing checkpoints.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

import envs
from mamba_jax.config import ADDED_LATER

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (incompatible config, corrupt files, wrong format)."""


def make_manager(directory: str, keep: int) -> ocp.CheckpointManager:
    if "://" not in directory:  # keep remote paths (gs://...) for Orbax's own file layer
        directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: Dict[str, Any]) -> None:
    """Saves ``state`` (any pytree of arrays) and JSON ``meta`` under ``step`` (blocking)."""
    meta = dict(meta, format_version=FORMAT_VERSION)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               meta=ocp.args.JsonSave(meta)), force=True)
    manager.wait_until_finished()


# Agent fields that change only speed or memory, not the arrays a checkpoint holds or the results:
# left out of the fingerprint, so a run can resume with other values (and runs saved before such a
# field existed still resume).
PERFORMANCE_ONLY_AGENT_FIELDS = ("scan_unroll", "scan_remat")
_ABSENT = "<absent>"


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _canonical(fp: Dict[str, Any]) -> Dict[str, Any]:
    """A fingerprint in the form this code stores and compares: every environment option resolved
    to its value (checkpoints written before env_kwargs listed the defaults stored only the
    overrides), agent fields added later filled in with what an older config meant
    (``config.ADDED_LATER``) and the performance-only agent fields dropped."""
    fp = dict(fp)
    fp["env_kwargs"] = envs.resolve_options(fp.get("env_name"), dict(fp.get("env_kwargs") or {}))
    agent = {k: v for k, v in (fp.get("agent") or {}).items()
             if k not in PERFORMANCE_ONLY_AGENT_FIELDS}
    # a field added later reads as its old meaning where a checkpoint predates it
    fp["agent"] = {**{k: v for k, v in ADDED_LATER.items()
                      if k not in PERFORMANCE_ONLY_AGENT_FIELDS}, **agent}
    return fp


def diff_fields(a: Dict[str, Any], b: Dict[str, Any]) -> Dict[str, Tuple[Any, Any]]:
    """``{dotted field: (value in a, value in b)}`` for every field of two nested dicts that
    differs, sorted by field; a field missing on one side reads ``"<absent>"`` there."""
    a, b = _flatten(a), _flatten(b)
    return {k: (a.get(k, _ABSENT), b.get(k, _ABSENT)) for k in sorted(set(a) | set(b))
            if a.get(k, _ABSENT) != b.get(k, _ABSENT)}


def _diff_fingerprints(saved: Dict[str, Any], current: Dict[str, Any]) -> list[str]:
    """``field: checkpoint=... now=...`` for every (dotted) field that differs."""
    return [f"{k}: checkpoint={old!r} now={new!r}"
            for k, (old, new) in diff_fields(_canonical(saved), _canonical(current)).items()]


def restore(manager: ocp.CheckpointManager, abstract_state: Any,
            fingerprint: Dict[str, Any], step: Optional[int] = None) -> Tuple[Any, Dict[str, Any]]:
    """Restores the latest (or ``step``) checkpoint into the structure of ``abstract_state``.

    Raises:
        CheckpointError: no checkpoint, format/config mismatch, or unreadable files. The message
            says which and where; nothing on disk is modified.
    """
    step = manager.latest_step() if step is None else step
    meta = read_meta(manager, step)
    where = os.path.join(str(manager.directory), str(step))
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {where} has format_version {meta.get('format_version')}, "
            f"this code reads {FORMAT_VERSION}")
    diffs = _diff_fingerprints(meta.get("fingerprint", {}), fingerprint)
    if diffs:
        raise CheckpointError(
            f"checkpoint {where} was written with an incompatible config; differing fields: "
            + "; ".join(diffs)
            + ("" if not any(d.startswith("replay_shards") for d in diffs) else
               " (replay_shards = devices the saved replay buffer is split over: resume on the "
               "same number of devices)"))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as e:
        raise CheckpointError(f"checkpoint {where} is unreadable or corrupt (state): {e}") from e
    return restored, meta


def read_meta(manager: ocp.CheckpointManager, step: Optional[int] = None) -> Dict[str, Any]:
    """The JSON ``meta`` of the latest (or ``step``) checkpoint. Raises ``CheckpointError``."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint found in {manager.directory}")
    try:
        return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types for damaged files
        raise CheckpointError(f"checkpoint {os.path.join(str(manager.directory), str(step))} is "
                              f"unreadable or corrupt (meta): {e}") from e


def fingerprint_of(config, replay_shards: int = 1) -> Dict[str, Any]:
    """Config fields a checkpoint depends on (shapes and semantics), JSON-friendly.

    ``replay_shards``: devices the replay buffer is split over; a saved buffer is only valid for
    the same split (recorded when it is > 1, so single-device checkpoints stay compatible)."""
    keys = ("env_name", "K", "H", "num_envs", "batch_size", "replay_capacity", "checkpoint_replay",
            "variant", "sequence", "window_length")
    fp = {k: config.get(k) for k in keys}
    fp["env_kwargs"] = config.env_kwargs.to_dict()
    fp["agent"] = config.agent.to_dict()
    fp = json.loads(json.dumps(_canonical(fp), default=str))
    fp["num_seeds"] = config.get("num_seeds", 1)
    if replay_shards > 1 and config.get("checkpoint_replay"):
        fp["replay_shards"] = int(replay_shards)
    return fp
