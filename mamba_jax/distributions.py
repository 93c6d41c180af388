"""Distributions as pure functions over logits (spec 4.2, 4.3, 6.6). All math in float32.

* Two-hot symlog discretisation (reward and critic heads): 255 bins linspace(-20, 20).
* One-hot categorical with 1% unimix and straight-through samples (RSSM latents, discrete actor).
* Bounded normal actor: mean tanh(mu), std (max-min) sigmoid(s + 2) + min.
* KL between (unimixed) categoricals.
* Scalar heads of either kind (``HEAD_KINDS``): 'twohot' (the above) or 'mse' (one output
  regressing symlog y by squared error; a diagnostic, not MAMBA's or DreamerV3's choice).
"""
from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mamba_jax.nets import symexp, symlog

NUM_BINS = 255
BIN_LOW, BIN_HIGH = -20.0, 20.0


def bins(num: int = NUM_BINS, low: float = BIN_LOW, high: float = BIN_HIGH) -> jax.Array:
    """The bin centres in symlog space: [num] (built symmetrically so the middle bin is exactly 0)."""
    mid = (num - 1) / 2
    centres = (np.arange(num) - mid) * ((high - low) / (num - 1)) + (high + low) / 2
    return jnp.asarray(centres, jnp.float32)


# ----------------------------------------------------------------------------- two-hot


def twohot_encode(y: jax.Array, centres: jax.Array) -> jax.Array:
    """Two-hot weights of y (already in symlog space) over ``centres``: [...] -> [..., K].

    k_lo = #(centres <= y) - 1, k_hi = K - #(centres > y), both clipped to [0, K-1]; if equal the
    whole weight goes there, else w_lo = |c_hi - y| / (|c_lo - y| + |c_hi - y|), w_hi = 1 - w_lo.
    """
    k = centres.shape[0]
    y = y.astype(jnp.float32)
    below = jnp.sum((centres <= y[..., None]).astype(jnp.int32), -1) - 1
    above = k - jnp.sum((centres > y[..., None]).astype(jnp.int32), -1)
    below = jnp.clip(below, 0, k - 1)
    above = jnp.clip(above, 0, k - 1)
    equal = below == above
    d_lo = jnp.where(equal, 1.0, jnp.abs(centres[below] - y))
    d_hi = jnp.where(equal, 1.0, jnp.abs(centres[above] - y))
    total = d_lo + d_hi
    w_lo = d_hi / total
    w_hi = d_lo / total
    return (jax.nn.one_hot(below, k) * w_lo[..., None] + jax.nn.one_hot(above, k) * w_hi[..., None])


def twohot_log_prob(logits: jax.Array, target: jax.Array, centres: jax.Array | None = None
                    ) -> jax.Array:
    """log p(target) = sum_k twohot(symlog(target))_k log_softmax(logits)_k.  [..., K], [...] -> [...]."""
    centres = bins(logits.shape[-1]) if centres is None else centres
    chex.assert_equal_shape_prefix([logits, target], target.ndim)
    weights = twohot_encode(symlog(target), centres)
    return jnp.sum(weights * jax.nn.log_softmax(logits.astype(jnp.float32), -1), -1)


def twohot_mean(logits: jax.Array, centres: jax.Array | None = None) -> jax.Array:
    """Prediction (mode) = symexp(sum_k softmax(logits)_k c_k).  [..., K] -> [...]."""
    centres = bins(logits.shape[-1]) if centres is None else centres
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    return symexp(jnp.sum(probs * centres, -1))


HEAD_KINDS = ('twohot', 'mse')


def head_outputs(kind: str, num_bins: int = NUM_BINS) -> int:
    """Output units of a scalar head of ``kind``: ``num_bins`` for 'twohot', 1 for 'mse'."""
    if kind not in HEAD_KINDS:
        raise ValueError(f'head kind must be one of {HEAD_KINDS}, got {kind!r}')
    return num_bins if kind == 'twohot' else 1


def head_mean(kind: str, out: jax.Array) -> jax.Array:
    """A scalar head's prediction: ``twohot_mean`` of [..., K] logits ('twohot') or symexp of the
    one output [..., 1] ('mse'). [..., K] -> [...]."""
    if kind == 'twohot':
        return twohot_mean(out)
    return symexp(out[..., 0].astype(jnp.float32))


def head_nll(kind: str, out: jax.Array, target: jax.Array) -> jax.Array:
    """A scalar head's loss at ``target``: -``twohot_log_prob`` ('twohot') or
    (out - symlog(target))^2 ('mse', DreamerV3's symlog squared error).  [..., K], [...] -> [...]."""
    if kind == 'twohot':
        return -twohot_log_prob(out, target)
    chex.assert_equal_shape_prefix([out, target], target.ndim)
    return (out[..., 0].astype(jnp.float32) - symlog(target))**2


# ----------------------------------------------------------------------------- categorical


def unimix_probs(logits: jax.Array, unimix: float) -> jax.Array:
    """(1 - unimix) softmax(logits) + unimix / K over the last axis (float32)."""
    probs = jax.nn.softmax(logits.astype(jnp.float32), -1)
    if unimix > 0.0:
        probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
    return probs


def onehot_from_uniform(u: jax.Array, probs: jax.Array) -> jax.Array:
    """Inverse-CDF categorical draw as a one-hot vector (no gradient): index k = #(cdf_j <= u),
    i.e. the first class whose cumulative probability exceeds u, clipped to K - 1.

    u [...] uniform in [0, 1), probs [..., K] -> [..., K] float. Needs one uniform per categorical
    instead of K Gumbel draws and no argmax (a slow variadic reduction on XLA:CPU).
    """
    k = probs.shape[-1]
    tri = jnp.asarray(np.triu(np.ones((k, k))), probs.dtype)  # cdf_j = sum_{i <= j} p_i
    cdf = jnp.matmul(jax.lax.stop_gradient(probs), tri, precision=jax.lax.Precision.HIGHEST)
    idx = jnp.minimum(jnp.sum((cdf <= u[..., None]).astype(jnp.int32), -1), k - 1)
    return (idx[..., None] == jnp.arange(k)).astype(probs.dtype)


def onehot_sample(key: jax.Array, probs: jax.Array) -> jax.Array:
    """Straight-through one-hot sample: onehot(s) + probs - sg(probs).  [..., K] -> [..., K]."""
    return onehot_sample_uniform(jax.random.uniform(key, probs.shape[:-1], jnp.float32), probs)


def onehot_sample_uniform(u: jax.Array, probs: jax.Array) -> jax.Array:
    """``onehot_sample`` with pre-drawn uniform noise u [...] (one draw per categorical)."""
    sample = onehot_from_uniform(u, probs)
    return sample + probs - jax.lax.stop_gradient(probs)


def onehot_mode(probs: jax.Array) -> jax.Array:
    """Straight-through one-hot argmax: onehot(argmax) + probs - sg(probs)."""
    mode = jax.nn.one_hot(jnp.argmax(probs, -1), probs.shape[-1], dtype=probs.dtype)
    return mode + probs - jax.lax.stop_gradient(probs)


def onehot_log_prob(probs: jax.Array, x: jax.Array) -> jax.Array:
    """sum_k x_k log probs_k: [..., K] -> [...]."""
    return jnp.sum(x * jnp.log(probs), -1)


def categorical_entropy(probs: jax.Array) -> jax.Array:
    """-sum_k p_k log p_k: [..., K] -> [...]."""
    return -jnp.sum(probs * jnp.log(probs), -1)


def categorical_kl(p: jax.Array, q: jax.Array) -> jax.Array:
    """KL[p || q] = sum_k p_k (log p_k - log q_k) over the last axis: [..., K] -> [...]."""
    return jnp.sum(p * (jnp.log(p) - jnp.log(q)), -1)


# ----------------------------------------------------------------------------- bounded normal


def normal_params(out: jax.Array, min_std: float = 0.1, max_std: float = 1.0
                  ) -> tuple[jax.Array, jax.Array]:
    """Actor head output [..., 2A] -> (mean tanh(mu), std (max-min) sigmoid(s + 2) + min)."""
    mu, s = jnp.split(out.astype(jnp.float32), 2, -1)
    return jnp.tanh(mu), (max_std - min_std) * jax.nn.sigmoid(s + 2.0) + min_std


def normal_sample(key: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """Reparameterised sample mean + std * eps (not squashed or clipped)."""
    return mean + std * jax.random.normal(key, mean.shape, mean.dtype)


def normal_log_prob(mean: jax.Array, std: jax.Array, x: jax.Array) -> jax.Array:
    """Independent normal log-density summed over the last axis: [..., A] -> [...]."""
    z = (x - mean) / std
    return jnp.sum(-0.5 * z**2 - jnp.log(std) - 0.5 * math.log(2 * math.pi), -1)


def normal_entropy(std: jax.Array) -> jax.Array:
    """Entropy of an independent normal, summed over the last axis: [..., A] -> [...]."""
    return jnp.sum(0.5 + 0.5 * math.log(2 * math.pi) + jnp.log(std), -1)
