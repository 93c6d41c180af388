"""Point Robot + Wind (official `halfcirclewind`, spec 9.2/10.2): K=3 x H=100, train_ratio 0.2."""
from experiments.configs import variants
from experiments.configs.base import base_config


def get_config(variant: str = "mamba"):
    c = base_config("point_robot_wind", K=3, H=100, imag_horizon=10, enc_mlp_layers=4,
                    dec_mlp_layers=4)
    c.train_ratio = 0.2
    c.total_frames = 1_000_000
    return variants.apply(c, variant)
