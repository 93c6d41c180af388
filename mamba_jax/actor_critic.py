"""Behaviour learning in imagination (spec 6).

Rollout (I = imag_horizon): s_0 = start; for i < I-1: a_i ~ pi(.|sg(f_i)), s_{i+1} = img_step(s_i, a_i)
with a sampled prior latent. (The official code also computes s_I, which no loss uses; we skip it.)
    r_i = reward mode at f_i,  c_i = discount * sigmoid(cont logit at f_i),  v_i = critic mode at f_i
    R_{I-1} = v_{I-1};  R_i = r_{i+1} + c_{i+1} ((1 - lam) v_{i+1} + lam R_{i+1}),  i = 0..I-2
    w_0 = 1, w_i = prod_{j<i} c_j (stop-gradient)
Return normalisation: EMA (alpha 0.01, init 0) of the 5th/95th percentiles of R, S = max(1, P95 - P5).
Actor:  dynamics:  -mean w_i [(R_i - v_i)/S + eta H_i]
        reinforce: -mean w_i [log pi(a_i|f_i) sg(R_i - v_i) + eta H_i]   (not divided by S)
Critic: mean w_i [-log p(sg R_i) - log p(slow critic mode at f_i)] on sg(f_i).
"""
from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import ml_collections

from mamba_jax import config as config_lib
from mamba_jax import distributions as dist
from mamba_jax import rssm as rssm_lib
from mamba_jax.nets import MLP
from mamba_jax.world_model import WorldModel, compute_dtype

sg = jax.lax.stop_gradient


def lambda_returns(reward: jax.Array, cont: jax.Array, value: jax.Array, lam: float
                   ) -> jax.Array:
    """TD(lambda) returns over an imagined rollout, time-major.

    reward, cont, value: [I, N] (reward/cont/value at f_i; reward[0] and cont[0] unused).
    Returns R [I-1, N]: R_{I-1} = v_{I-1}, R_i = r_{i+1} + c_{i+1} ((1-lam) v_{i+1} + lam R_{i+1}).
    """
    chex.assert_equal_shape([reward, cont, value])
    inputs = reward[1:] + cont[1:] * (1.0 - lam) * value[1:]  # [I-1, N]

    def step(nxt, xs):
        inp, c = xs
        ret = inp + c * lam * nxt
        return ret, ret

    _, rets = jax.lax.scan(step, value[-1], (inputs, cont[1:]), reverse=True)
    return rets


def return_weights(cont: jax.Array) -> jax.Array:
    """w_i = prod_{j<i} c_j for i = 0..I-2 (stop-gradient): [I, N] -> [I-1, N]."""
    w = jnp.cumprod(jnp.concatenate([jnp.ones_like(cont[:1]), cont[:-2]], 0), 0)
    return sg(w)


def slow_update(slow_params, params, fraction: float):
    """Slow-critic EMA (spec 6.5): slow <- fraction * params + (1 - fraction) * slow, leaf-wise."""
    return jax.tree.map(lambda s, x: fraction * x + (1.0 - fraction) * s, slow_params, params)


def update_retnorm(retnorm: jax.Array, returns: jax.Array, alpha: float, percentiles,
                   limit: float) -> tuple[jax.Array, jax.Array]:
    """EMA of the (lo, hi) percentiles of sg(returns); returns (new [2], scale max(limit, hi - lo))."""
    q = jnp.percentile(sg(returns).reshape(-1), jnp.asarray(percentiles, jnp.float32))
    new = alpha * q + (1.0 - alpha) * retnorm
    return new, jnp.maximum(limit, new[1] - new[0])


@dataclasses.dataclass(frozen=True)
class ActorCritic:
    """Actor and critic definitions and their losses. Parameters live outside."""
    config: ml_collections.FrozenConfigDict
    action_dim: int
    discrete: bool

    @property
    def actor(self):
        c = self.config
        out = self.action_dim if self.discrete else 2 * self.action_dim
        return MLP(c.actor_layers, c.actor_units, out=out, out_scale=1.0,
                   dtype=compute_dtype(c))

    @property
    def critic(self):
        c = self.config
        out = dist.head_outputs(config_lib.critic_head(c), c.twohot_bins)
        return MLP(c.critic_layers, c.critic_units, out=out, out_scale=0.0,
                   dtype=compute_dtype(c))

    def init(self, key, feat_dim: int) -> dict:
        ka, kc = jax.random.split(key)
        x = jnp.zeros((1, feat_dim))
        critic = self.critic.init(kc, x)['params']
        return {'actor': self.actor.init(ka, x)['params'], 'critic': critic,
                'slow_critic': jax.tree.map(jnp.copy, critic)}

    # --------------------------------------------------------------- policy
    def policy(self, actor_params, feat: jax.Array):
        """Distribution parameters at feat [..., F]: ('onehot', probs) or ('normal', (mean, std))."""
        out = self.actor.apply({'params': actor_params}, feat)
        if self.discrete:
            return dist.unimix_probs(out, self.config.actor_unimix)
        return dist.normal_params(out, self.config.actor_min_std, self.config.actor_max_std)

    def sample(self, params, key, mode: bool = False):
        """Straight-through sample (or mode) from policy params: -> [..., A] float32."""
        if self.discrete:
            return dist.onehot_mode(params) if mode else dist.onehot_sample(key, params)
        mean, std = params
        return mean if mode else dist.normal_sample(key, mean, std)

    def entropy(self, params) -> jax.Array:
        return dist.categorical_entropy(params) if self.discrete else dist.normal_entropy(params[1])

    def log_prob(self, params, action) -> jax.Array:
        if self.discrete:
            return dist.onehot_log_prob(params, action)
        return dist.normal_log_prob(params[0], params[1], action)

    def value(self, critic_params, feat: jax.Array) -> jax.Array:
        """Critic mode symexp(E[bins]) (symexp(out) with ``agent.critic_head='mse'``): [..., F] -> [...]."""
        return dist.head_mean(config_lib.critic_head(self.config),
                              self.critic.apply({'params': critic_params}, feat))

    # --------------------------------------------------------------- imagination
    def imagine(self, wm: WorldModel, wm_params, actor_params, start: rssm_lib.State,
                key: jax.Array, start_deter_proj: jax.Array | None = None):
        """Roll out I = imag_horizon states from start [N] (detached by the caller).

        start_deter_proj: optional precomputed ``wm.deter_proj(start['deter'])`` [N, 3D] (computed
        once per unique posterior state by the caller).
        Returns (feats [I, N, F], actions [I-1, N, A], policy params at f_0..f_{I-2}).
        Gradients flow from later feats through the sampled actions into the actor (dynamics
        backprop); the actor itself sees sg(f_i).
        """
        horizon = self.config.imag_horizon

        def step(state, k, deter_proj=None):
            ka, ks = jax.random.split(k)
            f = rssm_lib.feat(state)
            pol = self.policy(actor_params, sg(f))
            action = self.sample(pol, ka)
            nxt, _ = wm.img_step(wm_params, state, action, ks, deter_proj=deter_proj)
            return nxt, (f, action, pol)

        keys = jax.random.split(key, horizon - 1)
        last, first = step(start, keys[0], start_deter_proj)
        outs = jax.tree.map(lambda x: x[None], first)
        if horizon > 2:
            last, rest = jax.lax.scan(step, last, keys[1:])
            outs = jax.tree.map(lambda a, b: jnp.concatenate([a, b], 0), outs, rest)
        feats, actions, pol = outs
        feats = jnp.concatenate([feats, rssm_lib.feat(last)[None]], 0)
        return feats, actions, pol

    # --------------------------------------------------------------- losses
    def actor_loss(self, actor_params, wm: WorldModel, wm_params, critic_params,
                   start: rssm_lib.State, key: jax.Array, retnorm: jax.Array,
                   start_deter_proj: jax.Array | None = None):
        """Actor loss (only actor_params receive gradients: world model and critic are frozen).

        start: detached posterior states [N]. retnorm: [2] EMAs of (P5, P95).
        Returns (loss, aux) with aux = {'feats' [I, N, F] (detached), 'returns' [I-1, N],
        'weights' [I-1, N], 'retnorm' [2], 'metrics'}.
        """
        c = self.config
        wm_params, critic_params = sg(wm_params), sg(critic_params)
        feats, actions, pol = self.imagine(wm, wm_params, actor_params, start, key,
                                           None if start_deter_proj is None else sg(start_deter_proj))
        horizon = feats.shape[0]
        # r_0 is never used; c_0 only enters the weights when I >= 3: skip the heads at f_0 for I = 2
        # (f_0 is a detached start state, so this only saves compute).
        pad = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x], 0)
        reward = pad(wm.reward(wm_params, feats[1:]))  # [I, N], reward[0] = 0 (unused)
        # Heads at f_0 are evaluated on their own: f_0 does not depend on the actor, so autodiff
        # then skips their backward pass (a joint call over [I, N] would back-propagate through
        # all I rows and discard the f_0 part).
        if horizon >= 3:
            cont = c.discount * jnp.concatenate([wm.cont_prob(wm_params, feats[:1]),
                                                 wm.cont_prob(wm_params, feats[1:])], 0)  # [I, N]
        else:
            cont = pad(c.discount * wm.cont_prob(wm_params, feats[1:]))  # cont[0] unused
        value = jnp.concatenate([self.value(critic_params, feats[:1]),
                                 self.value(critic_params, feats[1:])], 0)  # [I, N]
        returns = lambda_returns(reward, cont, value, c.discount_lambda)  # [I-1, N]
        weights = return_weights(cont)  # [I-1, N]
        retnorm, scale = update_retnorm(retnorm, returns, c.retnorm_alpha, c.retnorm_percentiles,
                                        c.retnorm_limit)
        base = value[:-1]
        entropy = self.entropy(pol)  # [I-1, N]
        if c.imag_gradient == 'dynamics':
            target = (returns - base) / scale
        else:
            target = self.log_prob(pol, sg(actions)) * sg(returns - base)
        loss = -jnp.mean(weights * (target + c.actor_entropy * entropy))
        metrics = {
            'ac/actor_loss': loss,
            'ac/return_mean': jnp.mean(returns),
            'ac/reward_mean': jnp.mean(reward[1:]),
            'ac/value_mean': jnp.mean(value),
            'ac/entropy': jnp.mean(entropy),
            'ac/retnorm_scale': scale,
            'ac/retnorm_lo': retnorm[0],
            'ac/retnorm_hi': retnorm[1],
            'ac/cont_mean': jnp.mean(cont[1:]),
            'ac/action_abs_mean': jnp.mean(jnp.abs(actions)),
        }
        aux = {'feats': sg(feats), 'returns': sg(returns), 'weights': weights, 'retnorm': retnorm,
               'metrics': metrics}
        return loss, aux

    def critic_loss(self, critic_params, slow_critic_params, feats: jax.Array, returns: jax.Array,
                    weights: jax.Array) -> jax.Array:
        """mean w_i [-log p(R_i) - log p(slow mode_i)] on sg(f_0..f_{I-2}).

        feats [I, N, F], returns [I-1, N], weights [I-1, N] -> scalar.
        """
        f = sg(feats[:-1])
        logits = self.critic.apply({'params': critic_params}, f)
        slow = sg(self.value(slow_critic_params, f))
        kind = config_lib.critic_head(self.config)
        nll = dist.head_nll(kind, logits, sg(returns)) + dist.head_nll(kind, logits, slow)
        return jnp.mean(sg(weights) * nll)
