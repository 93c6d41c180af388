"""The MAMBA agent: world model + actor-critic + optimisers (spec 7.1, 7.5).

``Agent`` is a frozen (hashable) dataclass of static settings; all state is in ``TrainState``.
One ``train_step`` (spec 7.5):
  1. world-model loss on the batch (only [0, wm_horizon) counts) and one Adam step;
  2. slow critic <- f critic + (1 - f) slow critic;
  3. ``behavior_batch_length`` detached posterior start states per sequence from [0, wm_horizon);
  4. imagination with the *updated* world model; actor and critic losses on that rollout
     (both computed with the pre-update actor/critic), one Adam step each.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from mamba_jax import rssm as rssm_lib
from mamba_jax.actor_critic import ActorCritic, slow_update
from mamba_jax.config import start_context, validate
from mamba_jax.world_model import WorldModel

Carry = Any  # ({'deter': [N, D], 'stoch': [N, S, C]}, prev_action [N, A])


@flax.struct.dataclass
class TrainState:
    """Everything needed for a bit-exact resume."""
    params: dict  # {'wm', 'actor', 'critic', 'slow_critic'}
    opt_state: dict  # {'wm', 'actor', 'critic'}
    retnorm: jax.Array  # [2] EMAs of (P5, P95)
    step: jax.Array  # int32 [] number of updates applied


def _adam(lr, eps, clip):
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr, b1=0.9, b2=0.999, eps=eps))


def optimizers(config) -> dict:
    """The three optimisers of an agent config: {'wm', 'actor', 'critic'} (global-norm clip, then
    Adam with the config's learning rate and epsilon)."""
    c = config
    return {'wm': _adam(c.model_lr, c.model_eps, c.model_grad_clip),
            'actor': _adam(c.actor_lr, c.ac_eps, c.actor_grad_clip),
            'critic': _adam(c.critic_lr, c.ac_eps, c.critic_grad_clip)}


@dataclasses.dataclass(frozen=True)
class Agent:
    config: ml_collections.FrozenConfigDict
    obs_dim: int
    action_dim: int
    discrete: bool

    def __post_init__(self):
        if not isinstance(self.config, ml_collections.FrozenConfigDict):
            object.__setattr__(self, 'config', ml_collections.FrozenConfigDict(self.config))
        validate(self.config)
        assert (self.config.actor_dist == 'onehot') == self.discrete, (
            'actor_dist must be onehot exactly for discrete action spaces')

    # --------------------------------------------------------------- components
    @property
    def wm(self) -> WorldModel:
        return WorldModel(self.config, self.obs_dim, self.action_dim)

    @property
    def ac(self) -> ActorCritic:
        return ActorCritic(self.config, self.action_dim, self.discrete)

    @property
    def optimizers(self) -> dict:
        return optimizers(self.config)

    # --------------------------------------------------------------- init
    def init(self, key: jax.Array) -> TrainState:
        """Fresh parameters, optimiser states, zero return normaliser and step counter."""
        return jax.jit(self._init)(key)

    def _init(self, key: jax.Array) -> TrainState:
        kw, ka = jax.random.split(key)
        params = {'wm': self.wm.init(kw), **self.ac.init(ka, self.wm.feat_dim)}
        opts = self.optimizers
        opt_state = {k: opts[k].init(params[k]) for k in ('wm', 'actor', 'critic')}
        return TrainState(params=params, opt_state=opt_state, retnorm=jnp.zeros((2,), jnp.float32),
                          step=jnp.zeros((), jnp.int32))

    # --------------------------------------------------------------- training
    def train_step(self, state: TrainState, batch: dict, key: jax.Array, wm_horizon,
                   noise_steps: int | None = None) -> tuple[TrainState, dict]:
        """One update (spec 7.5). batch [B, T, ...] (see WorldModel.loss); wm_horizon int32 [].

        noise_steps: the stored sequence length when ``batch`` holds only the first T steps of
        each sequence (T >= wm_horizon): the update is then the same as on the whole sequences.

        The same as ``ac_update(state, wm_update(state, batch, key, ...), key)``; the training
        loop runs those two halves as separate executables (``trainer.SplitUpdate``)."""
        wm_out = self.wm_update(state, batch, key, wm_horizon, noise_steps)
        return self.ac_update(state, wm_out, key)

    def wm_update(self, state: TrainState, batch: dict, key: jax.Array, wm_horizon,
                  noise_steps: int | None = None) -> dict:
        """First half of ``train_step``: the world-model gradient step.

        Returns ``{'params', 'opt_state'}`` (the updated world model and its optimiser state),
        ``'post'`` (posterior states, leaves [B, T, ...]: the training pass's, or with
        ``agent.start_context`` = L > 0 those of ``WorldModel.chunk_posteriors``),
        ``'wm_horizon'`` (int32 [], clipped to [1, T]) and ``'metrics'`` (world-model losses and
        gradient norm). Only the world model's parameters and optimiser state of ``state`` are
        read."""
        k_wm, _, _ = jax.random.split(key, 3)
        params = state.params['wm']
        t = batch['reward'].shape[1]
        wm_horizon = jnp.clip(jnp.asarray(wm_horizon, jnp.int32), 1, t)
        (_, (post, metrics)), g_wm = jax.value_and_grad(self.wm.loss, has_aux=True)(
            params, batch, k_wm, wm_horizon, noise_steps)
        upd, opt_wm = self.optimizers['wm'].update(g_wm, state.opt_state['wm'], params)
        every = start_context(self.config)
        if every:  # imagination starts from a short-belief pass (pre-update model, like post)
            post = self.wm.chunk_posteriors(params, batch, jax.random.fold_in(k_wm, 1), every,
                                            noise_steps)
        metrics = dict(metrics)
        metrics['grad_norm/wm'] = optax.tree.norm(g_wm)
        metrics['wm/horizon'] = wm_horizon.astype(jnp.float32)
        return {'params': optax.apply_updates(params, upd), 'opt_state': opt_wm, 'post': post,
                'wm_horizon': wm_horizon, 'metrics': metrics}

    def ac_update(self, state: TrainState, wm_out: dict, key: jax.Array
                  ) -> tuple[TrainState, dict]:
        """Second half of ``train_step``: slow-critic EMA, imagination from the detached
        posteriors of ``wm_out`` (``wm_update``'s result, same ``key``) with the updated world
        model, actor and critic steps. Returns the new state and all of the update's metrics."""
        c = self.config
        wm, ac, opts = self.wm, self.ac, self.optimizers
        _, k_start, k_imag = jax.random.split(key, 3)
        params, opt_state = state.params, state.opt_state
        wm_params, post, wm_horizon = wm_out['params'], wm_out['post'], wm_out['wm_horizon']
        b, t = post['deter'].shape[:2]

        # slow critic EMA (start of the behaviour update)
        slow = slow_update(params['slow_critic'], params['critic'], c.slow_critic_fraction)

        # start states: detached posteriors at behavior_batch_length indices per sequence
        n = c.behavior_batch_length
        idx = jax.random.randint(k_start, (b, n), 0, wm_horizon)
        gather = lambda x: jnp.take_along_axis(
            x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1).reshape((b * n,) + x.shape[2:])
        post = jax.lax.stop_gradient(post)
        start = jax.tree.map(gather, post)
        # the h-part of the first imagination GRU matmul, once per posterior state (B*T <= B*n rows)
        # with the updated world model, instead of once per start
        start_deter_proj = gather(wm.deter_proj(wm_params, post['deter'])) if n >= t else None

        # actor and critic (losses both from the pre-update actor/critic)
        (actor_loss, aux), g_actor = jax.value_and_grad(ac.actor_loss, has_aux=True)(
            params['actor'], wm, wm_params, params['critic'], start, k_imag, state.retnorm,
            start_deter_proj)
        critic_loss, g_critic = jax.value_and_grad(ac.critic_loss)(
            params['critic'], slow, aux['feats'], aux['returns'], aux['weights'])
        upd, opt_actor = opts['actor'].update(g_actor, opt_state['actor'], params['actor'])
        actor_params = optax.apply_updates(params['actor'], upd)
        upd, opt_critic = opts['critic'].update(g_critic, opt_state['critic'], params['critic'])
        critic_params = optax.apply_updates(params['critic'], upd)

        new_state = TrainState(
            params={'wm': wm_params, 'actor': actor_params, 'critic': critic_params,
                    'slow_critic': slow},
            opt_state={'wm': wm_out['opt_state'], 'actor': opt_actor, 'critic': opt_critic},
            retnorm=aux['retnorm'], step=state.step + 1)
        metrics = dict(wm_out['metrics'])
        metrics.update(aux['metrics'])
        metrics['ac/critic_loss'] = critic_loss
        metrics['grad_norm/actor'] = optax.tree.norm(g_actor)
        metrics['grad_norm/critic'] = optax.tree.norm(g_critic)
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        return new_state, metrics

    # --------------------------------------------------------------- acting
    def initial_carry(self, state: TrainState, batch_size: int) -> Carry:
        latent = self.wm.initial_state(state.params['wm'], (batch_size,))
        return latent, jnp.zeros((batch_size, self.action_dim), jnp.float32)

    def policy_step(self, state: TrainState, obs: dict, carry: Carry, key: jax.Array,
                    mode: bool = False) -> tuple[jax.Array, Carry]:
        """One acting step (spec 7.1). obs: 'state' [N, obs_dim], 'reward' [N], 'time_step' [N],
        'is_first' [N] bool, optional 'image' [N, 64, 64, 3]. Returns (action [N, A], new carry)."""
        wm, ac = self.wm, self.ac
        params = jax.lax.stop_gradient(state.params)
        latent, prev_action = carry
        n = obs['reward'].shape[0]
        chex.assert_shape(prev_action, (n, self.action_dim))
        k_post, k_act = jax.random.split(key)
        embed = wm.embed(params['wm'], obs)
        latent, _ = wm.obs_step(params['wm'], latent, prev_action, embed,
                                obs['is_first'].astype(bool), k_post)
        pol = ac.policy(params['actor'], rssm_lib.feat(latent))
        action = jax.lax.stop_gradient(ac.sample(pol, k_act, mode=mode))
        latent = jax.lax.stop_gradient(latent)
        return action, (latent, action)
