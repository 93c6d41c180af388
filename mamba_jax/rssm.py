"""Recurrent state-space model (spec 4.2).

State = {'deter': h [..., D] float32, 'stoch': z [..., S, C] float32 one-hot (straight-through)}.

One prior step ("img_step"):
    a' = a / sg(max(1, |a|))                      (per component)
    x  = SiLU(LN(W_z flatten(z) + W_a a'))         (== DenseLN over [z, a'])
    h' = GRU_LN(x, h)
    prior logits = Linear(DenseLN(h'))             [S, C]
Posterior ("obs_step"): post logits = Linear(SiLU(LN(W_h h' + W_e embed)))  (== DenseLN over [h', e]).

The two concatenated-input layers are stored as one kernel per input part so the parts that do not
depend on the recurrence (W_a a, W_e e) can be computed for all time steps with one matmul outside
the scan. Initial state: h0 = tanh(W0) (W0 zero-initialised), z0 = mode of the prior at h0; at
is_first the previous state is replaced by (h0, z0) and the previous action by 0.
"""
from __future__ import annotations

import functools
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from mamba_jax import distributions as dist
from mamba_jax.nets import MATMUL_NAME, DenseLN, GRULN, layer_norm, linear

State = dict  # {'deter': [..., D], 'stoch': [..., S, C]}
Dtype = Any


class RSSM(nn.Module):
    """Parameters and single-step maps of the RSSM; drive it with the functions below."""
    deter: int
    stoch: int
    classes: int
    hidden: int
    action_dim: int
    embed_dim: int
    unimix: float = 0.01
    dtype: Dtype = jnp.float32

    def setup(self):
        zdim = self.stoch * self.classes
        self.init_deter = self.param('init_deter', nn.initializers.zeros, (self.deter,), jnp.float32)
        fan_img = zdim + self.action_dim
        self.img_in_z = linear(self.hidden, self.dtype, fan_in=fan_img)
        self.img_in_a = linear(self.hidden, self.dtype, fan_in=fan_img)
        self.img_in_norm = layer_norm(self.dtype)
        self.gru = GRULN(self.deter, self.hidden, self.dtype)
        self.img_out = DenseLN(self.hidden, self.dtype)
        self.img_logits = linear(zdim, self.dtype, use_bias=True, init='uniform', scale=1.0)
        fan_obs = self.deter + self.embed_dim
        self.obs_out_h = linear(self.hidden, self.dtype, fan_in=fan_obs)
        self.obs_out_e = linear(self.hidden, self.dtype, fan_in=fan_obs)
        self.obs_out_norm = layer_norm(self.dtype)
        self.obs_logits = linear(zdim, self.dtype, use_bias=True, init='uniform', scale=1.0)

    def __call__(self, state: State, action: jax.Array, embed: jax.Array):
        """Touches every parameter (used by ``init``)."""
        deter = self.core(state['stoch'], self.action_proj(action), state['deter'])
        return self.prior_logits(deter), self.post_logits(deter, self.embed_proj(embed)), self.initial()

    def initial(self) -> State:
        """Learned initial state without batch axes: deter [D], stoch [S, C].

        z0 is the prior's straight-through mode at h0 (spec 4.2), so the loss reaches
        ``init_deter`` and the prior head through z0 as well as through h0."""
        deter = jnp.tanh(self.init_deter)
        probs = dist.unimix_probs(self.prior_logits(deter), self.unimix)
        stoch = dist.onehot_mode(probs.astype(jnp.float32))
        return {'deter': deter, 'stoch': stoch}

    def action_proj(self, action: jax.Array) -> jax.Array:
        """W_a a' with a' = a / sg(max(1, |a|)): [..., A] -> [..., hidden]."""
        action = action.astype(jnp.float32)
        action = action / jax.lax.stop_gradient(jnp.maximum(1.0, jnp.abs(action)))
        return self.img_in_a(action)

    def embed_proj(self, embed: jax.Array) -> jax.Array:
        """W_e e: [..., E] -> [..., hidden]."""
        return self.obs_out_e(embed)

    def deter_proj(self, deter: jax.Array) -> jax.Array:
        """The h-part of the GRU input matmul: [..., D] -> [..., 3D]."""
        return self.gru.project_h(deter)

    def core(self, stoch: jax.Array, action_proj: jax.Array, deter: jax.Array,
             deter_proj: jax.Array | None = None) -> jax.Array:
        """h' = GRU_LN(SiLU(LN(W_z flatten(z) + W_a a')), h): -> [..., D] float32.

        deter_proj: optional precomputed ``deter_proj(deter)``."""
        z = stoch.reshape(stoch.shape[:-2] + (-1,))
        x = nn.silu(self.img_in_norm(self.img_in_z(z) + action_proj))
        return self.gru(x, deter, deter_proj)

    def core_offset(self, stoch, action_proj, deter, offset):
        """``core`` with the GRU kernel gradient stopped and ``offset`` added to its matmul output
        (see GRULN.with_offset). Returns (h', GRU matmul input [..., hidden + D])."""
        z = stoch.reshape(stoch.shape[:-2] + (-1,))
        x = nn.silu(self.img_in_norm(self.img_in_z(z) + action_proj))
        return self.gru.with_offset(x, deter, offset)

    def prior_logits(self, deter: jax.Array) -> jax.Array:
        """[..., D] -> [..., S, C] float32."""
        logits = self.img_logits(self.img_out(deter)).astype(jnp.float32)
        return logits.reshape(deter.shape[:-1] + (self.stoch, self.classes))

    def post_logits(self, deter: jax.Array, embed_proj: jax.Array) -> jax.Array:
        """[..., D], [..., hidden] -> [..., S, C] float32."""
        x = nn.silu(self.obs_out_norm(self.obs_out_h(deter) + embed_proj))
        logits = self.obs_logits(x).astype(jnp.float32)
        return logits.reshape(deter.shape[:-1] + (self.stoch, self.classes))


# ----------------------------------------------------------------------------- pure functions


def _apply(rssm: RSSM, params, method, *args):
    return rssm.apply({'params': params}, *args, method=method)


def feat(state: State) -> jax.Array:
    """concat[flatten(z), h]: [..., S*C + D]."""
    z = state['stoch']
    return jnp.concatenate([z.reshape(z.shape[:-2] + (-1,)), state['deter']], -1)


def initial_state(rssm: RSSM, params, batch_shape: tuple[int, ...]) -> State:
    """Learned initial state broadcast to ``batch_shape``."""
    init = _apply(rssm, params, RSSM.initial)
    return jax.tree.map(lambda x: jnp.broadcast_to(x, batch_shape + x.shape), init)


def reset_where(first: jax.Array, state: State, init: State) -> State:
    """Replace ``state`` by ``init`` where first ([N] bool)."""
    def sel(x, i):
        m = first.reshape(first.shape + (1,) * (x.ndim - first.ndim))
        return jnp.where(m, jnp.broadcast_to(i, x.shape), x)
    return jax.tree.map(sel, state, init)


def sample_stoch(key: jax.Array, logits: jax.Array, unimix: float, sample: bool = True):
    probs = dist.unimix_probs(logits, unimix)
    return dist.onehot_sample(key, probs) if sample else dist.onehot_mode(probs)


def img_step(rssm: RSSM, params, state: State, action: jax.Array, key: jax.Array,
             sample: bool = True, deter_proj: jax.Array | None = None
             ) -> tuple[State, jax.Array]:
    """One prior step. state [N], action [N, A] -> (next state [N], prior logits [N, S, C]).

    deter_proj: optional precomputed ``RSSM.deter_proj(state['deter'])`` [N, 3D]."""
    a_proj = _apply(rssm, params, RSSM.action_proj, action)
    deter = _apply(rssm, params, RSSM.core, state['stoch'], a_proj, state['deter'], deter_proj)
    logits = _apply(rssm, params, RSSM.prior_logits, deter)
    stoch = sample_stoch(key, logits, rssm.unimix, sample)
    return {'deter': deter, 'stoch': stoch}, logits


def obs_step(rssm: RSSM, params, state: State, action: jax.Array, embed: jax.Array,
             is_first: jax.Array, key: jax.Array, sample: bool = True,
             uniform: jax.Array | None = None) -> tuple[State, jax.Array]:
    """One posterior step with is_first reset (acting). state [N], action [N, A] (previous action),
    embed [N, E], is_first [N] -> (posterior state [N], posterior logits [N, S, C]).
    uniform: optional pre-drawn noise [N, S] in [0, 1) for the sample (used instead of ``key``)."""
    chex.assert_rank([action, embed, is_first], [2, 2, 1])
    init = initial_state(rssm, params, is_first.shape)
    state = reset_where(is_first, state, init)
    action = jnp.where(is_first[:, None], 0.0, action)
    a_proj = _apply(rssm, params, RSSM.action_proj, action)
    e_proj = _apply(rssm, params, RSSM.embed_proj, embed)
    deter = _apply(rssm, params, RSSM.core, state['stoch'], a_proj, state['deter'])
    logits = _apply(rssm, params, RSSM.post_logits, deter, e_proj)
    if uniform is not None and sample:
        stoch = dist.onehot_sample_uniform(uniform, dist.unimix_probs(logits, rssm.unimix))
    else:
        stoch = sample_stoch(key, logits, rssm.unimix, sample)
    return {'deter': deter, 'stoch': stoch}, logits


def observe(rssm: RSSM, params, embed: jax.Array, action: jax.Array, is_first: jax.Array,
            key: jax.Array, unroll: int = 1, remat: str = 'none', noise_steps: int | None = None
            ) -> tuple[State, jax.Array, jax.Array]:
    """Posterior unroll over a batch of sequences from the learned initial state.

    embed [B, T, E], action [B, T, A] (the action that led to step t), is_first [B, T] bool.
    noise_steps: draw the sampling noise for this many steps (>= T) and use the first T, so a
    sequence truncated to its first T steps gets exactly the posterior samples of the full one.
    Returns (posterior states [B, T], posterior logits [B, T, S, C], prior logits [B, T, S, C]).
    The prior logits are computed after the scan from the posterior deter (they are not needed by
    the recurrence), in one batched matmul.
    """
    b, t = is_first.shape
    chex.assert_shape(embed, (b, t, None))
    chex.assert_shape(action, (b, t, None))
    first = is_first.astype(bool)
    action = jnp.where(first[..., None], 0.0, action.astype(jnp.float32))
    a_proj = _apply(rssm, params, RSSM.action_proj, action)  # [B, T, H]
    e_proj = _apply(rssm, params, RSSM.embed_proj, embed)  # [B, T, H]
    # float32 into the scan: the backward loop stacks their cotangents, and XLA:CPU converts a
    # stacked bf16 array whole on every step (a no-op for compute_dtype float32)
    a_proj, e_proj = a_proj.astype(jnp.float32), e_proj.astype(jnp.float32)
    # uniform noise for all posterior samples drawn at once (cheaper than per-step key splits)
    steps = t if noise_steps is None else noise_steps
    if steps < t:
        raise ValueError(f'noise_steps={steps} < sequence length {t}')
    uniform = jax.random.uniform(key, (steps, b, rssm.stoch), jnp.float32)[:t]
    swap = lambda x: jnp.swapaxes(x, 0, 1)
    deter, stoch, post_logits = _posterior_scan(rssm, unroll, remat, params, swap(a_proj),
                                                swap(e_proj), swap(first), uniform)
    deter, stoch, post_logits = swap(deter), swap(stoch), swap(post_logits)
    prior_logits = _apply(rssm, params, RSSM.prior_logits, deter)
    return {'deter': deter, 'stoch': stoch}, post_logits, prior_logits


def _scan_impl(rssm, unroll, remat, params, offset, a_proj, e_proj, first, uniform):
    """Time-major posterior scan with the GRU kernel used as sg(kernel) + offset (see below).

    Returns ((deter [T, B, D], stoch [T, B, S, C], post logits [T, B, S, C]),
             GRU matmul inputs [T, B, hidden + D])."""
    init = _apply(rssm, params, RSSM.initial)
    b = first.shape[1]

    def step(carry, inp):
        deter, stoch = carry
        a_p, e_p, fst, uni, off = inp
        deter = jnp.where(fst[:, None], init['deter'], deter)
        stoch = jnp.where(fst[:, None, None], init['stoch'], stoch)
        deter, gru_in = _apply(rssm, params, RSSM.core_offset, stoch, a_p, deter, off)
        logits = _apply(rssm, params, RSSM.post_logits, deter, e_p)
        stoch = dist.onehot_sample_uniform(uni, dist.unimix_probs(logits, rssm.unimix))
        # float32: XLA:CPU converts a stacked bf16 scan output whole on every step
        return (deter, stoch), (deter, stoch, logits, gru_in.astype(jnp.float32))

    policy = REMAT_POLICIES[remat]
    if policy is not None:
        step = jax.checkpoint(step, policy=policy, prevent_cse=False)

    carry0 = (jnp.broadcast_to(init['deter'], (b,) + init['deter'].shape),
              jnp.broadcast_to(init['stoch'], (b,) + init['stoch'].shape))
    _, (deter, stoch, logits, gru_in) = jax.lax.scan(
        step, carry0, (a_proj, e_proj, first, uniform, offset), unroll=unroll)
    return (deter, stoch, logits), gru_in


# What the posterior scan's backward pass keeps from its forward pass (``scan_remat``):
#   'none': everything autodiff saves (~20 stacked [T, B, ...] residuals);
#   'dots': only matmul outputs and the carry; the element-wise parts are recomputed in the
#           backward loop (same values to float rounding, ~150 MB less temp memory on the official
#           point-robot update, same speed on the 2-core CPU). bf16 matmuls are a custom_vjp that
#           the dots policy does not see, so their outputs are saved by name (nets.MATMUL_NAME);
#           without it the backward loop recomputed the GRU matmul every step (~80 ms per update);
#   'nothing': only the carry (the whole step is recomputed).
REMAT_POLICIES = {'none': None,
                  'dots': jax.checkpoint_policies.save_from_both_policies(
                      jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
                      jax.checkpoint_policies.save_only_these_names(MATMUL_NAME)),
                  'nothing': jax.checkpoint_policies.nothing_saveable}


def _zero_offset(rssm, first):
    # float32 whatever the compute dtype: its cotangent is stacked per step in the backward loop,
    # and a bf16 stack there (a convert fused into the update) was copied whole every step
    return jnp.zeros(first.shape + (3 * rssm.deter,), jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _posterior_scan(rssm, unroll, remat, params, a_proj, e_proj, first, uniform):
    """Posterior scan whose GRU kernel gradient is one matmul over all steps.

    Autodiff of a scan accumulates the gradient of a loop-invariant weight with one small
    [in, B] x [B, out] matmul per step (B = 16 rows), which dominated the backward pass. Here the
    scan uses sg(kernel) plus a zero ``offset`` input per step; the offset's cotangent is the
    per-step matmul-output cotangent, and the kernel gradient is sum_t in_t^T d offset_t, computed
    after the scan as a single [in, T*B] x [T*B, out] matmul. Values and gradients are unchanged.
    """
    offset = _zero_offset(rssm, first)
    return _scan_impl(rssm, unroll, remat, params, offset, a_proj, e_proj, first, uniform)[0]


def _posterior_scan_fwd(rssm, unroll, remat, params, a_proj, e_proj, first, uniform):
    offset = _zero_offset(rssm, first)
    fn = lambda p, off, a, e: _scan_impl(rssm, unroll, remat, p, off, a, e, first, uniform)
    out, vjp_fn, gru_in = jax.vjp(fn, params, offset, a_proj, e_proj, has_aux=True)
    return out, (vjp_fn, gru_in)


def _posterior_scan_bwd(rssm, unroll, remat, res, g):
    vjp_fn, gru_in = res
    d_params, d_offset, d_a, d_e = vjp_fn(g)
    # Not flattened like nets.matmul: these are time-major [T, B, ...] with B sharded over the
    # data mesh, and merging T and B would make GSPMD all-gather them.
    d_kernel = jnp.einsum('tbi,tbo->io', gru_in, d_offset, preferred_element_type=jnp.float32)
    d_params = dict(d_params)
    d_params['gru'] = dict(d_params['gru'], kernel=d_params['gru']['kernel'] + d_kernel)
    return d_params, d_a, d_e, None, None


_posterior_scan.defvjp(_posterior_scan_fwd, _posterior_scan_bwd)
