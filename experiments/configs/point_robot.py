"""Point Robot Navigation (official `halfcircle`, spec 9.2/10.1): K=3 x H=100, 2e6 logger frames
(= ~1.0e6 real frames), train_ratio 0.01 (10 updates per round of 10 meta-episodes)."""
from experiments.configs import variants
from experiments.configs.base import base_config


def get_config(variant: str = "mamba"):
    c = base_config("point_robot", K=3, H=100, imag_horizon=2, enc_mlp_layers=4, dec_mlp_layers=4)
    c.train_ratio = 0.01
    c.total_frames = 1_000_000
    return variants.apply(c, variant)
