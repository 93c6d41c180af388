"""Method variants as config transformations: MAMBA, the vanilla-Dreamer baseline, ablations.

Select one with the config string: ``--config=experiments/configs/point_robot.py:dreamer``.

* ``mamba``: the official MAMBA settings of the task file.
* ``dreamer``: vanilla DreamerV3 in the same codebase: 64-step training chunks from random
  starts with the belief restarted at each chunk (no whole-meta-episode context), every step of a
  chunk reconstructed (no subsampling, no window heads), imagination from every posterior of the
  batch (16 x 64 = 1024 starts). Observations keep the reward/time augmentation of the
  environment wrapper, so the comparison isolates the training-context changes.
* ``no_local_recon``: MAMBA without its local reconstruction scheme: reconstruct every step of
  the meta-episode (no 64-step subsample) and no window ("multi") heads.
* ``no_wm_schedule``: MAMBA with the world-model horizon fixed at K*H from the start.
"""
VARIANTS = ("mamba", "dreamer", "no_local_recon", "no_wm_schedule")


def apply(c, variant: str):
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    c.variant = variant
    length = c.K * c.H
    if variant == "dreamer":
        c.sequence = "window"
        c.window_length = min(64, length)
        c.agent.hidden_states_subsample = c.window_length
        c.agent.behavior_batch_length = c.window_length
        c.agent.reconstruction_window = 0
        c.wm_horizon_initial = length
        c.wm_horizon_reach_frames = 0.0
    elif variant == "no_local_recon":
        c.agent.hidden_states_subsample = length
        c.agent.reconstruction_window = 0
    elif variant == "no_wm_schedule":
        c.wm_horizon_initial = length
        c.wm_horizon_reach_frames = 0.0
    return c
