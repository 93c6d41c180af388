"""Humanoid-Dir (official `humanoiddir`, spec 9.2/10.6): K=2 x H=200, train_ratio 0.03,
imagination horizon 10, encoder/decoder 2x512, lrs 2e-4/6e-5/6e-5, wm-horizon schedule 50 -> K*H
reached at 15e6 logger frames (legacy units; 7.5e6 real), 3e7 logger frames (= ~1.5e7 real)."""
from experiments.configs import variants
from experiments.configs.base import base_config


def get_config(variant: str = "mamba"):
    c = base_config("humanoid_dir", K=2, H=200, imag_horizon=10, model_lr=2e-4, actor_lr=6e-5,
                    critic_lr=6e-5, enc_mlp_layers=2, dec_mlp_layers=2)
    c.train_ratio = 0.03
    c.total_frames = 15_000_000
    c.wm_horizon_initial = 50
    c.wm_horizon_reach_frames = 15e6
    c.legacy_double_count = True  # the reach value is in the official logger's units
    return variants.apply(c, variant)
