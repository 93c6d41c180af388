"""Agent configuration presets (ml_collections).

``agent_config(preset='official', **overrides)`` returns a ConfigDict.

* 'official': MAMBA's configs.yaml ``defaults`` after dreamer.main's overrides (spec 9.1): RSSM
  deter 512, stoch 16x16, hidden 64; heads 2x128; encoder/decoder MLP 2x512 (the point-robot
  family, Escape Room and Rooms use 4x512: override ``enc_mlp_layers``/``dec_mlp_layers``);
  imag_horizon 10 (2 for Point Robot and Rooms).
* 'XS', 'S', 'M', 'L': DreamerV3 model sizes from the DreamerV3 paper v1 (arXiv 2301.04104v1,
  Table B.1; the same numbers as the v1 configs.yaml presets xsmall..large):
      size  GRU deter  dense units  MLP layers  CNN depth  stoch
      XS    256        256          1           24         32x32
      S     512        512          2           32         32x32
      M     1024       640          3           48         32x32
      L     2048       768          4           64         32x32
  Applied to every MLP (encoder, decoder, reward, cont, actor, critic) and to the RSSM hidden
  width (dyn_hidden = units). (The current dreamerv3 configs.yaml uses size1m..size400m with a
  block-diagonal GRU, e.g. size12m = deter 2048 / hidden 256 / 16 classes; we do not implement
  block GRUs, so we use the v1 table.) Everything else (losses, MAMBA settings) stays official.
* 'tiny': a test preset for fast CPU unit tests.
"""
from __future__ import annotations

import math

import ml_collections

DREAMERV3_SIZES = {
    # name: (deter, units, layers, cnn_depth)
    'XS': (256, 256, 1, 24),
    'S': (512, 512, 2, 32),
    'M': (1024, 640, 3, 48),
    'L': (2048, 768, 4, 64),
}


def _official() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.preset = 'official'
    # RSSM (spec 4.2, 9.1)
    c.dyn_deter = 512
    c.dyn_stoch = 16
    c.dyn_discrete = 16
    c.dyn_hidden = 64
    c.unimix = 0.01
    # encoder / decoder (spec 4.1, 4.3)
    c.image_obs = False
    c.cnn_depth = 32
    c.enc_mlp_layers = 2
    c.enc_mlp_units = 512
    # a diagnostic, 0 in MAMBA and DreamerV3: subtracted from the observed last reward where it is
    # an observation (encoder input, decoder target), not from the reward head's target or the
    # returns. With env_kwargs.reward_offset=x and obs_reward_shift=x the agent observes the
    # unshifted task's rewards (a sub-episode's reset reward 0 reads as -x) but is trained on
    # the shifted ones
    c.obs_reward_shift = 0.0
    # a diagnostic, 0 in MAMBA and DreamerV3: the reward head is trained on reward - x and its
    # prediction (imagination, probes) is its two-hot mean + x, so with env_kwargs.reward_offset=x
    # the head's two-hot target sits where the unshifted task's does (the critic's returns do not
    # move)
    c.reward_head_shift = 0.0
    # diagnostics, 'twohot' in MAMBA and DreamerV3: 'mse' makes the reward head / the critic (and
    # its slow copy) one output regressing symlog of the target by squared error
    c.reward_head = 'twohot'
    c.critic_head = 'twohot'
    c.dec_mlp_layers = 2
    c.dec_mlp_units = 512
    # heads
    c.reward_layers = 2
    c.reward_units = 128
    c.cont_layers = 2
    c.cont_units = 128
    c.critic_layers = 2
    c.critic_units = 128
    c.actor_layers = 2
    c.actor_units = 128
    c.twohot_bins = 255
    # world-model loss (spec 4.4)
    c.kl_dyn_scale = 0.5
    c.kl_rep_scale = 0.1
    c.kl_free = 1.0
    c.decoder_scale = 1.0
    c.reward_scale = 1.0
    c.cont_scale = 1.0
    # MAMBA (spec 5, 6.1)
    c.hidden_states_subsample = 64
    c.behavior_batch_length = 512
    c.reconstruction_window = 3
    c.multi_head_pairing = 'official_tiled'  # or 'aligned'
    # imagination starts: 0 = the training pass's posteriors (MAMBA and DreamerV3); L > 0 = a
    # diagnostic: starts from a second, gradient-free posterior pass over the same sequences with
    # the belief restarted every L steps (see Agent.chunk_posteriors)
    c.start_context = 0
    # behaviour (spec 6)
    c.imag_horizon = 10
    c.discount = 0.997
    c.discount_lambda = 0.95
    c.actor_entropy = 3e-4
    c.actor_dist = 'normal'  # or 'onehot'
    c.imag_gradient = 'dynamics'  # or 'reinforce'
    c.actor_min_std = 0.1
    c.actor_max_std = 1.0
    c.actor_unimix = 0.01
    c.slow_critic_fraction = 0.02
    c.retnorm_alpha = 0.01
    c.retnorm_percentiles = (5.0, 95.0)
    c.retnorm_limit = 1.0
    # optimisers (spec 4.4, 6.5, 6.6, 15)
    c.model_lr = 1e-4
    c.model_eps = 1e-8
    c.model_grad_clip = 1000.0
    c.actor_lr = 3e-5
    c.critic_lr = 3e-5
    c.ac_eps = 1e-5
    c.actor_grad_clip = 100.0
    c.critic_grad_clip = 100.0
    # numerics / performance
    c.compute_dtype = 'float32'  # or 'bfloat16'
    c.scan_unroll = 1
    c.scan_remat = 'dots'  # posterior-scan residuals kept for the backward pass (rssm.REMAT_POLICIES)
    return c


def agent_config(preset: str = 'official', **overrides) -> ml_collections.ConfigDict:
    """Agent config for ``preset`` in {'official', 'XS', 'S', 'M', 'L', 'tiny'} with overrides."""
    c = _official()
    c.preset = preset
    if preset in DREAMERV3_SIZES:
        deter, units, layers, depth = DREAMERV3_SIZES[preset]
        c.dyn_deter, c.dyn_hidden = deter, units
        c.dyn_stoch, c.dyn_discrete = 32, 32
        c.cnn_depth = depth
        for name in ('enc_mlp', 'dec_mlp'):
            c[f'{name}_layers'], c[f'{name}_units'] = layers, units
        for name in ('reward', 'cont', 'critic', 'actor'):
            c[f'{name}_layers'], c[f'{name}_units'] = layers, units
    elif preset == 'tiny':
        c.dyn_deter, c.dyn_hidden, c.dyn_stoch, c.dyn_discrete = 32, 16, 4, 4
        c.cnn_depth = 4
        c.enc_mlp_layers, c.enc_mlp_units = 2, 32
        c.dec_mlp_layers, c.dec_mlp_units = 2, 32
        for name in ('reward', 'cont', 'critic', 'actor'):
            c[f'{name}_layers'], c[f'{name}_units'] = 2, 32
        c.hidden_states_subsample = 8
        c.behavior_batch_length = 8
        c.imag_horizon = 3
    elif preset != 'official':
        raise ValueError(f'unknown preset {preset!r}')
    for k, v in overrides.items():
        if k not in c:
            raise KeyError(f'unknown agent config field {k!r}')
        c[k] = v
    validate(c)
    return c


class FieldError(ValueError):
    """An agent config value is invalid: ``field`` names it, ``msg`` says what is allowed."""

    def __init__(self, field: str, msg: str):
        super().__init__(f'{field}: {msg}')
        self.field, self.msg = field, msg


# Agent fields added after run folders were first saved, with the value an older config means.
ADDED_LATER = {'scan_remat': 'none', 'start_context': 0, 'obs_reward_shift': 0.0,
               'reward_head_shift': 0.0, 'reward_head': 'twohot', 'critic_head': 'twohot'}


def scan_remat(c) -> str:
    """``c.scan_remat``; 'none' for configs saved before the field existed (older run folders)."""
    return c.get('scan_remat', ADDED_LATER['scan_remat'])


def start_context(c) -> int:
    """``c.start_context``; 0 for configs saved before the field existed (older run folders)."""
    return c.get('start_context', ADDED_LATER['start_context'])


def obs_reward_shift(c) -> float:
    """``c.obs_reward_shift``; 0 for configs saved before the field existed (older run folders)."""
    return c.get('obs_reward_shift', ADDED_LATER['obs_reward_shift'])


def reward_head_shift(c) -> float:
    """``c.reward_head_shift``; 0 for configs saved before the field existed (older run folders)."""
    return c.get('reward_head_shift', ADDED_LATER['reward_head_shift'])


def reward_head(c) -> str:
    """``c.reward_head``; 'twohot' for configs saved before the field existed (older run folders)."""
    return c.get('reward_head', ADDED_LATER['reward_head'])


def critic_head(c) -> str:
    """``c.critic_head``; 'twohot' for configs saved before the field existed (older run folders)."""
    return c.get('critic_head', ADDED_LATER['critic_head'])


def validate(c: ml_collections.ConfigDict) -> None:
    """Refuse settings the implementation does not support (``FieldError`` naming the field)."""
    def check(ok, field, msg):
        if not ok:
            value = c.get(field, ADDED_LATER.get(field))
            raise FieldError(field, f'{msg}, got {value!r}')

    check(c.reconstruction_window >= 0 and (c.reconstruction_window == 0
                                            or c.reconstruction_window % 2 == 1),
          'reconstruction_window', 'must be 0 or odd')
    check(c.multi_head_pairing in ('official_tiled', 'aligned'), 'multi_head_pairing',
          "must be 'official_tiled' or 'aligned'")
    check(c.actor_dist in ('normal', 'onehot'), 'actor_dist', "must be 'normal' or 'onehot'")
    check(c.imag_gradient in ('dynamics', 'reinforce'), 'imag_gradient',
          "must be 'dynamics' or 'reinforce'")
    check(c.compute_dtype in ('float32', 'bfloat16'), 'compute_dtype',
          "must be 'float32' or 'bfloat16'")
    check(scan_remat(c) in ('none', 'dots', 'nothing'), 'scan_remat',
          "must be 'none', 'dots' or 'nothing'")
    check(start_context(c) >= 0, 'start_context', 'must be >= 0 (0 = the training posteriors)')
    for field, shift in (('obs_reward_shift', obs_reward_shift(c)),
                         ('reward_head_shift', reward_head_shift(c))):
        check(isinstance(shift, (int, float)) and not isinstance(shift, bool)
              and math.isfinite(shift), field, 'must be a finite number')
    for field, kind in (('reward_head', reward_head(c)), ('critic_head', critic_head(c))):
        check(kind in ('twohot', 'mse'), field, "must be 'twohot' or 'mse'")
    check(c.imag_horizon >= 2, 'imag_horizon', 'must be >= 2 (one lambda-return target)')
