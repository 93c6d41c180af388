"""Escape Room (official `escaperoom`, spec 9.2/10.3): K=2 x H=60, train_ratio 0.2,
4e6 logger frames (= ~2.0e6 real)."""
from experiments.configs import variants
from experiments.configs.base import base_config


def get_config(variant: str = "mamba"):
    c = base_config("escape_room", K=2, H=60, imag_horizon=10, enc_mlp_layers=4, dec_mlp_layers=4)
    c.train_ratio = 0.2
    c.total_frames = 2_000_000
    return variants.apply(c, variant)
