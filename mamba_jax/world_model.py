"""World model: encoder + RSSM + heads, and its loss (spec 4.4, 5.2-5.4).

Loss for one batch of meta-episode prefixes (shapes fixed at T = K*H; only [0, wm_horizon) counts):
    dyn_t = KL[sg(post_t) || prior_t],  rep_t = KL[post_t || sg(prior_t)]  (summed over latents)
    L_kl  = 0.5 mean_{b, t < wm_h} max(1, dyn_t) + 0.1 mean_{b, t < wm_h} max(1, rep_t)
    prediction losses (decoder per key, reward two-hot, cont Bernoulli) on ``hidden_states_subsample``
    indices per sequence drawn with replacement from [0, wm_h); optional multi heads (spec 5.4).
    L = sum(prediction losses) + L_kl
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections

from mamba_jax import config as config_lib
from mamba_jax import distributions as dist
from mamba_jax import rssm as rssm_lib
from mamba_jax.nets import MLP, ConvDecoder, Encoder, VectorDecoder, symlog


def wm_horizon_at(frames, total_length: int, initial: int, reach: float) -> int:
    """World-model horizon after ``frames`` frames (spec 5.2).

    min(K*H, ceil(initial + frames * (K*H - initial) / reach)); constant K*H when initial == K*H
    (or reach <= 0). Works on Python numbers and on jax arrays (returns int32 then).
    """
    if initial >= total_length or reach <= 0:
        return total_length if isinstance(frames, (int, float)) else jnp.full(
            jnp.shape(frames), total_length, jnp.int32)
    if isinstance(frames, (int, float)):
        return int(min(total_length, math.ceil(initial + frames * (total_length - initial) / reach)))
    value = jnp.ceil(initial + jnp.asarray(frames, jnp.float32) * (total_length - initial) / reach)
    return jnp.minimum(total_length, value).astype(jnp.int32)


def compute_dtype(config) -> Any:
    return jnp.bfloat16 if config.compute_dtype == 'bfloat16' else jnp.float32


@dataclasses.dataclass(frozen=True)
class WorldModel:
    """Module definitions + pure functions of the world model. Parameters live outside."""
    config: ml_collections.FrozenConfigDict
    obs_dim: int
    action_dim: int

    # --------------------------------------------------------------- modules
    @property
    def dtype(self):
        return compute_dtype(self.config)

    @property
    def vector_keys(self) -> tuple:
        keys = (('state', self.obs_dim),) if self.obs_dim > 0 else ()
        return keys + (('reward', 1), ('time_step', 1))

    @property
    def embed_dim(self) -> int:
        c = self.config
        e = c.enc_mlp_units
        if c.image_obs:
            e += 4 * 4 * 8 * c.cnn_depth
        return e

    @property
    def feat_dim(self) -> int:
        c = self.config
        return c.dyn_stoch * c.dyn_discrete + c.dyn_deter

    @property
    def encoder(self):
        c = self.config
        return Encoder(c.enc_mlp_layers, c.enc_mlp_units, image=c.image_obs, cnn_depth=c.cnn_depth,
                       dtype=self.dtype)

    @property
    def rssm(self):
        c = self.config
        return rssm_lib.RSSM(c.dyn_deter, c.dyn_stoch, c.dyn_discrete, c.dyn_hidden, self.action_dim,
                             self.embed_dim, unimix=c.unimix, dtype=self.dtype)

    def _decoder(self):
        c = self.config
        return VectorDecoder(self.vector_keys, c.dec_mlp_layers, c.dec_mlp_units, dtype=self.dtype)

    def _image_decoder(self):
        return ConvDecoder(self.config.cnn_depth, dtype=self.dtype)

    def _reward(self):
        c = self.config
        out = dist.head_outputs(config_lib.reward_head(c), c.twohot_bins)
        return MLP(c.reward_layers, c.reward_units, out=out, out_scale=0.0, dtype=self.dtype)

    def _cont(self):
        c = self.config
        return MLP(c.cont_layers, c.cont_units, out=1, out_scale=1.0, dtype=self.dtype)

    def head_names(self) -> tuple:
        names = ['decoder', 'reward', 'cont']
        if self.config.image_obs:
            names.append('image_decoder')
        if self.config.reconstruction_window > 0:
            names += ['multi_' + n for n in list(names)]
        return tuple(names)

    def head(self, name: str):
        base = name[len('multi_'):] if name.startswith('multi_') else name
        return {'decoder': self._decoder, 'reward': self._reward, 'cont': self._cont,
                'image_decoder': self._image_decoder}[base]()

    # --------------------------------------------------------------- init / apply
    def init(self, key: jax.Array) -> dict:
        """Parameter pytree {'encoder', 'rssm', <head names>} (float32)."""
        c = self.config
        keys = dict(zip(('encoder', 'rssm') + self.head_names(),
                        jax.random.split(key, 2 + len(self.head_names()))))
        obs = {'state': jnp.zeros((1, self.obs_dim)), 'reward': jnp.zeros((1,)),
               'time_step': jnp.zeros((1,))}
        if c.image_obs:
            obs['image'] = jnp.zeros((1, 64, 64, 3), jnp.uint8)
        params = {'encoder': self.encoder.init(keys['encoder'], obs)['params']}
        state = {'deter': jnp.zeros((1, c.dyn_deter)),
                 'stoch': jnp.zeros((1, c.dyn_stoch, c.dyn_discrete))}
        params['rssm'] = self.rssm.init(keys['rssm'], state, jnp.zeros((1, self.action_dim)),
                                        jnp.zeros((1, self.embed_dim)))['params']
        for name in self.head_names():
            in_dim = self.feat_dim + (self.embed_dim if name.startswith('multi_') else 0)
            params[name] = self.head(name).init(keys[name], jnp.zeros((1, in_dim)))['params']
        return params

    def apply_head(self, params, name: str, x):
        """x: [..., F] or (parts, gather) for the split first layer of the multi heads."""
        if isinstance(x, tuple):
            parts, gather = x
            if name.endswith('image_decoder'):  # the CNN decoder takes one materialised input
                parts = [p if g is None else _gather(p, g) for p, g in zip(parts, gather)]
                return self.head(name).apply({'params': params[name]}, jnp.concatenate(parts, -1))
            return self.head(name).apply({'params': params[name]}, parts, gather)
        return self.head(name).apply({'params': params[name]}, x)

    def observed_reward(self, reward: jax.Array) -> jax.Array:
        """The reward as an observation (encoder input, decoder target): ``reward`` less
        ``agent.obs_reward_shift`` (a diagnostic, 0 by default). [...] -> [...]."""
        shift = config_lib.obs_reward_shift(self.config)
        return reward - shift if shift else reward

    def embed(self, params, obs: dict) -> jax.Array:
        """obs with leading axes [...] -> embed [..., E]."""
        obs = dict(obs, reward=self.observed_reward(obs['reward']))
        return self.encoder.apply({'params': params['encoder']}, obs)

    def initial_state(self, params, batch_shape) -> rssm_lib.State:
        return rssm_lib.initial_state(self.rssm, params['rssm'], tuple(batch_shape))

    def img_step(self, params, state, action, key, sample=True, deter_proj=None):
        return rssm_lib.img_step(self.rssm, params['rssm'], state, action, key, sample, deter_proj)

    def deter_proj(self, params, deter: jax.Array) -> jax.Array:
        """The h-part of the GRU input matmul, [..., D] -> [..., 3D] (see rssm.img_step)."""
        return self.rssm.apply({'params': params['rssm']}, deter, method=rssm_lib.RSSM.deter_proj)

    def obs_step(self, params, state, action, embed, is_first, key, sample=True):
        return rssm_lib.obs_step(self.rssm, params['rssm'], state, action, embed, is_first, key,
                                 sample)

    def reward(self, params, feat: jax.Array) -> jax.Array:
        """Reward prediction symexp(E[bins]) (or symexp(out) with ``agent.reward_head='mse'``;
        + ``agent.reward_head_shift``): [..., F] -> [...]."""
        return self.reward_from_logits(self.apply_head(params, 'reward', feat))

    def reward_from_logits(self, logits: jax.Array) -> jax.Array:
        """The reward head's prediction from its outputs [..., bins] (or [..., 1]) -> [...]: the
        two-hot mean (``dist.head_mean``) plus ``agent.reward_head_shift`` (a diagnostic, 0 by
        default; the head is trained on the reward less it)."""
        shift = config_lib.reward_head_shift(self.config)
        mean = dist.head_mean(config_lib.reward_head(self.config), logits)
        return mean + shift if shift else mean

    def cont_prob(self, params, feat: jax.Array) -> jax.Array:
        """Continue probability sigmoid(logit): [..., F] -> [...]."""
        return jax.nn.sigmoid(self.apply_head(params, 'cont', feat)[..., 0])

    def chunk_posteriors(self, params, batch: dict, key: jax.Array, every: int,
                         noise_steps: int | None = None) -> rssm_lib.State:
        """Posteriors [B, T] (detached) of a second pass over ``batch`` whose belief is restarted
        from the initial state every ``every`` steps, at a random phase per sequence (and at
        ``is_first``), so no belief holds more than ``every`` steps of history: the imagination
        starts of ``agent.start_context`` (a diagnostic; MAMBA and DreamerV3 start from the
        training pass's posteriors). batch: as in ``loss``."""
        b, t = batch['is_first'].shape
        k_phase, k_obs = jax.random.split(key)
        restart = restart_mask(batch['is_first'], jax.random.randint(k_phase, (b,), 0, every), every)
        c = self.config
        post, _, _ = rssm_lib.observe(
            self.rssm, params['rssm'], self.embed(params, batch), batch['action'], restart, k_obs,
            unroll=c.scan_unroll, remat=config_lib.scan_remat(c), noise_steps=noise_steps)
        return jax.lax.stop_gradient(post)

    # --------------------------------------------------------------- loss
    def loss(self, params, batch: dict, key: jax.Array, wm_horizon: jax.Array,
             noise_steps: int | None = None) -> tuple[jax.Array, tuple[rssm_lib.State, dict]]:
        """World-model loss.

        batch: 'state' [B, T, obs_dim], 'reward' [B, T], 'time_step' [B, T], 'is_first' [B, T],
        'is_terminal' [B, T], 'action' [B, T, A], optional 'image' [B, T, 64, 64, 3] uint8.
        wm_horizon: int32 [] (traced), 1 <= wm_horizon <= T.
        noise_steps: the stored sequence length when ``batch`` is its first T steps (see
        ``rssm.observe``); the loss is then exactly the full sequence's for wm_horizon <= T.
        Returns (loss, (posterior states [B, T] (not detached), metrics dict of float32 scalars)).
        """
        c = self.config
        b, t = batch['reward'].shape
        chex.assert_shape(batch['action'], (b, t, self.action_dim))
        chex.assert_shape([batch['is_first'], batch['is_terminal'], batch['time_step']], (b, t))
        k_obs, k_idx = jax.random.split(key)
        wm_horizon = jnp.asarray(wm_horizon, jnp.int32)

        embed = self.embed(params, batch)  # [B, T, E]
        post, post_logits, prior_logits = rssm_lib.observe(
            self.rssm, params['rssm'], embed, batch['action'], batch['is_first'], k_obs,
            unroll=c.scan_unroll, remat=config_lib.scan_remat(c), noise_steps=noise_steps)

        # --- KL balancing with free bits, masked to [0, wm_horizon).
        mask_t = (jnp.arange(t) < wm_horizon).astype(jnp.float32)  # [T]
        denom = b * wm_horizon.astype(jnp.float32)
        kl_dyn_raw, kl_rep_raw = kl_terms(post_logits, prior_logits, c.unimix)  # [B, T]
        kl_dyn = jnp.sum(jnp.maximum(c.kl_free, kl_dyn_raw) * mask_t) / denom
        kl_rep = jnp.sum(jnp.maximum(c.kl_free, kl_rep_raw) * mask_t) / denom
        metrics = {
            'wm/kl_dyn': kl_dyn, 'wm/kl_rep': kl_rep,
            'wm/kl_raw': jnp.sum(kl_dyn_raw * mask_t) / denom,
            'wm/prior_entropy': _masked_mean(
                dist.categorical_entropy(dist.unimix_probs(prior_logits, c.unimix)).sum(-1),
                mask_t, denom),
            'wm/post_entropy': _masked_mean(
                dist.categorical_entropy(dist.unimix_probs(post_logits, c.unimix)).sum(-1),
                mask_t, denom),
        }
        total = c.kl_dyn_scale * kl_dyn + c.kl_rep_scale * kl_rep

        # --- prediction heads at subsampled positions.
        feat = rssm_lib.feat(post)  # [B, T, F]
        n = c.hidden_states_subsample
        idx = jax.random.randint(k_idx, (b, n), 0, wm_horizon)  # [B, n]
        targets = self._targets(batch)
        feat_s = _gather(feat, idx)
        targets_s = _gather_tree(targets, idx)
        losses, reward_logits = self._head_losses(params, '', feat_s, targets_s,
                                                  jnp.ones((b, n), jnp.float32))
        metrics.update(reward_hit_products(self.reward_from_logits(reward_logits), targets_s['reward']))
        w = c.reconstruction_window
        if w > 0:
            feat_pos, embed_m, tgt_m, mask_m = multi_window(
                embed, targets, idx, wm_horizon, w, c.multi_head_pairing)
            # input [feat_s[feat_pos], embed_m]: the feat part of the first layer is computed once
            # per sampled step and then gathered (see nets.DenseLN)
            x = ((feat_s, embed_m), (feat_pos, None))
            losses.update(self._head_losses(params, 'multi_', x, tgt_m, mask_m)[0])
        for name, value in losses.items():
            metrics[f'wm/{name}'] = value
            base = name[len('multi_'):] if name.startswith('multi_') else name
            scale = {'reward': c.reward_scale, 'cont': c.cont_scale}.get(base, c.decoder_scale)
            total = total + scale * value
        metrics['wm/loss'] = total
        return total, (post, metrics)

    def _targets(self, batch: dict) -> dict:
        tg = {'reward': batch['reward'].astype(jnp.float32),
              'time_step': batch['time_step'].astype(jnp.float32),
              'cont': 1.0 - batch['is_terminal'].astype(jnp.float32)}
        if self.obs_dim > 0:
            tg['state'] = batch['state'].astype(jnp.float32)
        if self.config.image_obs:
            tg['image'] = batch['image']
        return tg

    def _head_losses(self, params, prefix: str, x: jax.Array, tg: dict, mask: jax.Array
                     ) -> tuple[dict, jax.Array]:
        """Negative log-likelihoods averaged over all [B, N] positions (masked entries count as 0).

        x [B, N, F'], targets [B, N, ...], mask [B, N]. Returns ({name: scalar}, the reward
        head's logits [B, N, bins]).
        """
        count = float(mask.shape[0] * mask.shape[1])
        mean = lambda v: jnp.sum(v * mask) / count
        out = {}
        preds = self.apply_head(params, prefix + 'decoder', x)
        for k, _ in self.vector_keys:
            target = tg[k] if k == 'state' else tg[k][..., None]
            if k == 'reward':  # the observed reward, as the encoder sees it (embed)
                target = self.observed_reward(target)
            dist2 = (preds[k] - symlog(target))**2
            dist2 = jnp.where(dist2 < 1e-8, 0.0, dist2)
            out[f'{prefix}decoder_{k}'] = mean(jnp.sum(dist2, -1))
        if self.config.image_obs:
            pred = self.apply_head(params, prefix + 'image_decoder', x)
            target = tg['image'].astype(jnp.float32) / 255.0 - 0.5
            out[f'{prefix}decoder_image'] = mean(jnp.sum((pred - target)**2, (-3, -2, -1)))
        logits = self.apply_head(params, prefix + 'reward', x)
        shift = config_lib.reward_head_shift(self.config)
        target = tg['reward'] - shift if shift else tg['reward']
        out[f'{prefix}reward'] = mean(dist.head_nll(config_lib.reward_head(self.config), logits,
                                                    target))
        logit = self.apply_head(params, prefix + 'cont', x)[..., 0]
        y = tg['cont']
        logp = -jax.nn.softplus(-logit) * y - jax.nn.softplus(logit) * (1.0 - y)
        out[f'{prefix}cont'] = mean(-logp)
        return out, logits


def restart_mask(is_first: jax.Array, phase: jax.Array, every: int) -> jax.Array:
    """is_first [B, T] bool, phase int [B] in [0, every) -> [B, T] bool: True at is_first and at
    every step t with (t - phase) mod every == 0."""
    t = jnp.arange(is_first.shape[1])[None, :]
    return is_first.astype(bool) | ((t - phase[:, None]) % every == 0)


def reward_hit_products(pred: jax.Array, reward: jax.Array) -> dict:
    """Sparse-reward diagnostics of one batch (the paper's Figure-2 question, every round).

    pred, reward: [B, N] reward-head predictions at posteriors and the true rewards there.
    Returns the fraction of steps with a non-zero reward and the products whose averages over a
    round ``conditional_reward_means`` turns into the mean prediction at rewarded and at
    unrewarded steps (averaging per-batch conditional means instead would weight a batch with one
    rewarded step like one with a hundred).
    """
    hit = (reward != 0).astype(jnp.float32)
    pred = jax.lax.stop_gradient(pred.astype(jnp.float32))
    return {'wm/rewarded_frac': jnp.mean(hit),
            'wm/reward_pred_x_rewarded': jnp.mean(pred * hit),
            'wm/reward_pred_x_unrewarded': jnp.mean(pred * (1.0 - hit))}


def conditional_reward_means(metrics: dict) -> dict:
    """Metrics averaged over updates -> the same, with ``reward_hit_products``' products replaced
    by ``wm/reward_pred_rewarded`` and ``wm/reward_pred_unrewarded``: the reward head's mean
    prediction at steps whose true reward is non-zero and zero (0 where there were none; read
    them with ``wm/rewarded_frac``). Works elementwise, so per-seed [S] metrics stay per seed.
    """
    if 'wm/reward_pred_x_rewarded' not in metrics:
        return metrics
    out = dict(metrics)
    frac = out['wm/rewarded_frac']
    x_hit, x_miss = out.pop('wm/reward_pred_x_rewarded'), out.pop('wm/reward_pred_x_unrewarded')
    out['wm/reward_pred_rewarded'] = jnp.where(frac > 0, x_hit / jnp.maximum(frac, 1e-12), 0.0)
    out['wm/reward_pred_unrewarded'] = jnp.where(frac < 1, x_miss / jnp.maximum(1.0 - frac, 1e-12),
                                                 0.0)
    return out


def kl_terms(post_logits: jax.Array, prior_logits: jax.Array, unimix: float
             ) -> tuple[jax.Array, jax.Array]:
    """(dyn, rep) KLs summed over latents: [..., S, C] -> ([...], [...]).

    dyn = KL[sg(post) || prior] trains the prior; rep = KL[post || sg(prior)] trains the posterior.
    """
    post = dist.unimix_probs(post_logits, unimix)
    prior = dist.unimix_probs(prior_logits, unimix)
    sg = jax.lax.stop_gradient
    dyn = dist.categorical_kl(sg(post), prior).sum(-1)
    rep = dist.categorical_kl(post, sg(prior)).sum(-1)
    return dyn, rep


def kl_loss(post_logits, prior_logits, unimix: float, free: float, dyn_scale: float,
            rep_scale: float, mask: jax.Array | None = None) -> jax.Array:
    """dyn_scale mean max(free, dyn) + rep_scale mean max(free, rep) over the (masked) steps."""
    dyn, rep = kl_terms(post_logits, prior_logits, unimix)
    mask = jnp.ones(dyn.shape, jnp.float32) if mask is None else mask
    denom = jnp.sum(mask)
    return (dyn_scale * jnp.sum(jnp.maximum(free, dyn) * mask) / denom
            + rep_scale * jnp.sum(jnp.maximum(free, rep) * mask) / denom)


def _masked_mean(x, mask_t, denom):
    return jnp.sum(x * mask_t) / denom


def _gather(x: jax.Array, idx: jax.Array) -> jax.Array:
    """x [B, T, ...], idx [B, N] -> [B, N, ...]."""
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def _gather_tree(tree: dict, idx: jax.Array) -> dict:
    return {k: _gather(v, idx) for k, v in tree.items()}


def multi_window(embed, targets: dict, idx: jax.Array, wm_horizon: jax.Array, window: int,
                 pairing: str):
    """Inputs/targets of the multi heads (spec 5.4).

    For sampled step s = idx[b, i] and w in [0, W): embed index s - 1 + w, target index s + w, at
    flat position p = i W + w (interleaved). Targets at index 0 or >= wm_horizon are masked;
    embeddings at index -1 or >= wm_horizon are replaced by embed_0. The belief paired with p is
    the feature of sample p // W ('aligned') or, as in the official code, of sample p mod N
    ('official_tiled': the N sampled features tiled W times).
    embed [B, T, E], targets {k: [B, T, ...]}, idx [B, N] ->
    (feat_pos [B, N W] index into the N samples, embed [B, N W, E], targets {k: [B, N W, ...]},
     mask [B, N W]).
    """
    b, n = idx.shape
    t = embed.shape[1]
    s_rep = jnp.repeat(idx, window, axis=1)  # [B, N W]: s_{p // W}
    w = jnp.tile(jnp.arange(window), n)[None, :]  # [1, N W]: p mod W
    tgt_idx = s_rep + w
    emb_idx = s_rep - 1 + w
    mask = ((tgt_idx > 0) & (tgt_idx < wm_horizon)).astype(jnp.float32)
    emb_idx = jnp.where((emb_idx < 0) | (emb_idx >= wm_horizon), 0, emb_idx)
    tgt_idx = jnp.clip(tgt_idx, 0, t - 1)
    if pairing == 'official_tiled':
        feat_pos = jnp.tile(jnp.arange(n), window)  # p mod N
    elif pairing == 'aligned':
        feat_pos = jnp.repeat(jnp.arange(n), window)  # p // W
    else:
        raise ValueError(pairing)
    feat_pos = jnp.broadcast_to(feat_pos[None], (b, n * window))
    return feat_pos, _gather(embed, emb_idx), _gather_tree(targets, tgt_idx), mask
