"""Network building blocks (spec sections 4.1-4.3 and 15).

Everything here is a flax.linen module over float32 parameters; the matmul/conv compute dtype is
``dtype`` (float32 or bfloat16) while LayerNorm statistics are always reduced in float32.

* ``symlog`` / ``symexp``: sign(x) ln(|x|+1) and its inverse.
* Initialisers: trunk layers use a truncated normal with std sqrt(1/fan_avg)/0.87962566
  (truncated at +-2 std); output layers use ``uniform(scale)``: U(-l, l), l = sqrt(3 scale/fan_avg),
  which is all zeros for scale 0 (reward and critic outputs).
* ``DenseLN``: Linear(no bias) -> LayerNorm(eps 1e-3) -> SiLU, the unit of every MLP trunk.
* ``GRULN``: the LayerNorm GRU of spec 4.2 (one fused matmul over [x, h], update bias -1).
* ``ConvEncoder`` / ``ConvDecoder``: 64x64x3 images <-> 4x4x(8*depth).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp

Dtype = Any
LN_EPS = 1e-3
TRUNC_STD_CORRECTION = 0.87962566103423978  # std of a unit normal truncated at +-2


# ----------------------------------------------------------------------------- symlog


def symlog(x: jax.Array) -> jax.Array:
    """sign(x) * ln(|x| + 1), elementwise."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    """Inverse of symlog: sign(x) * (exp(|x|) - 1)."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


# ----------------------------------------------------------------------------- initialisers


def _fans(shape: Sequence[int]) -> tuple[float, float]:
    """(fan_in, fan_out) of a flax kernel: Dense [in, out], Conv [kh, kw, in, out]."""
    receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def trunc_normal_init(fan_in: int | None = None, truncate_abs: bool = False):
    """Truncated normal with std = sqrt(1/fan_avg)/0.8796 (spec 15).

    fan_in overrides the kernel's own fan-in: used when a layer over a concatenated input is split
    into one kernel per input part (so each part is initialised like the whole layer would be).
    truncate_abs=True truncates at +-2 in absolute value (conv layers of the official code),
    otherwise at +-2 std.
    """

    def init(key, shape, dtype=jnp.float32):
        fi, fo = _fans(shape)
        if fan_in is not None:
            receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
            fi = fan_in * receptive
        std = math.sqrt(1.0 / ((fi + fo) / 2.0)) / TRUNC_STD_CORRECTION
        if truncate_abs:
            lim = 2.0 / std
        else:
            lim = 2.0
        return std * jax.random.truncated_normal(key, -lim, lim, shape, dtype)

    return init


def uniform_init(scale: float = 1.0, fan_in: int | None = None):
    """U(-l, l) with l = sqrt(3 * scale / fan_avg); exactly zero for scale 0."""

    def init(key, shape, dtype=jnp.float32):
        if scale == 0.0:
            return jnp.zeros(shape, dtype)
        fi, fo = _fans(shape)
        if fan_in is not None:
            receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
            fi = fan_in * receptive
        lim = math.sqrt(3.0 * scale / ((fi + fo) / 2.0))
        return jax.random.uniform(key, shape, dtype, -lim, lim)

    return init


# ----------------------------------------------------------------------------- layers


def layer_norm(dtype: Dtype, name: str | None = None) -> nn.LayerNorm:
    """LayerNorm(eps=1e-3) with float32 statistics and parameters, output in ``dtype``."""
    return nn.LayerNorm(epsilon=LN_EPS, dtype=dtype, param_dtype=jnp.float32,
                        force_float32_reductions=True, name=name)


MATMUL_NAME = 'nets.matmul'  # checkpoint_name of bf16 matmul outputs (a custom_vjp, not a dot)


def matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., I] @ kernel [I, O] -> [..., O], computed as ONE 2-D matmul [N, I] x [I, O].

    float32 inputs give a float32 product as ``jnp.dot``. bfloat16 inputs (``compute_dtype``
    bfloat16) give a FLOAT32 product accumulated in float32, and the backward matmuls take bf16
    operands with float32 accumulation as well (``_matmul_bf16``).

    Why flatten instead of ``jnp.dot(x, kernel)`` on [T, B, I]: autodiff turns that dot's kernel
    gradient into a contraction over two leading axes, and XLA:CPU (jaxlib 0.10) then writes the
    output cotangent (e.g. a LayerNorm backward) a second time as a transposed [O, T*B] copy, with
    strided stores, just for that gradient. On the official sizes that was ~25 ms per layer, ~10
    layers per update; flattening first removes every such copy (the kernel gradient becomes an
    ordinary [I, N] x [N, O] matmul) and made a 4-layer [16, 300] MLP's gradient ~25% faster.

    Why a float32 product for bf16: on this CPU XLA's bf16 matmul with a bf16 result runs at
    ~130 GFLOP/s, slower than float32; with float32 accumulation it takes YNNPACK's bf16 kernels
    (~500-650 GFLOP/s, measured). And bf16 arrays stacked by a ``lax.scan`` (outputs, or the
    matmul outputs the 'dots' remat policy saves) are converted whole on every step by XLA:CPU, so
    matmul outputs stay float32.
    """
    lead = x.shape[:-1]
    x2 = x.reshape((-1, x.shape[-1]))
    if x2.dtype == kernel.dtype == jnp.bfloat16:
        # named so that remat policies can save it like a plain dot's output (MATMUL_NAME)
        y = checkpoint_name(_matmul_bf16(x2, kernel), MATMUL_NAME)
    else:
        y = jnp.dot(x2, kernel)
    return y.reshape(lead + (kernel.shape[-1],))


@jax.custom_vjp
def _matmul_bf16(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """bf16 [N, I] x bf16 [I, O] -> float32 [N, O] (float32 accumulation)."""
    return jnp.dot(x, kernel, preferred_element_type=jnp.float32)


def _matmul_bf16_fwd(x, kernel):
    return _matmul_bf16(x, kernel), (x, kernel)


def _matmul_bf16_bwd(res, g):
    """Cotangents in bf16 (the operands' dtype), both matmuls accumulated in float32."""
    x, kernel = res
    g = g.astype(x.dtype)
    dx = jax.lax.dot_general(g, kernel, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
    dk = jax.lax.dot_general(x, g, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


_matmul_bf16.defvjp(_matmul_bf16_fwd, _matmul_bf16_bwd)


class Dense(nn.Dense):
    """``flax.linen.Dense`` computed with ``matmul`` (flattened, f32 accumulation). [..., I] ->
    [..., F] in ``dtype``.

    Same parameters, initialisation order and auto-name ('Dense_<i>') as ``nn.Dense``, so
    checkpoints are unchanged; the bias is added in float32 before the cast to ``dtype``.
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        kernel = self.param('kernel', self.kernel_init, (inputs.shape[-1], self.features),
                            self.param_dtype)
        dtype = self.dtype or inputs.dtype
        y = matmul(inputs.astype(dtype), kernel.astype(dtype))
        if self.use_bias:
            bias = self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            y = y + bias.astype(y.dtype)
        return y.astype(dtype)


def linear(features: int, dtype: Dtype, *, use_bias: bool = False, init: str = 'trunc',
           scale: float = 1.0, fan_in: int | None = None, name: str | None = None) -> nn.Dense:
    """A Dense layer with the spec's initialisers. init: 'trunc' (trunk) or 'uniform' (outputs)."""
    kinit = trunc_normal_init(fan_in) if init == 'trunc' else uniform_init(scale, fan_in)
    return Dense(features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
                 kernel_init=kinit, name=name)


class DenseLN(nn.Module):
    """Linear(no bias) -> LayerNorm(eps 1e-3) -> SiLU.  [..., I] -> [..., units].

    ``x`` may also be a tuple of parts whose concatenation (last axis) is the layer input, with
    ``gather`` a matching tuple of index arrays (or None): part i is projected by its slice of the
    kernel on its own rows, then gathered along axis 1 (``take_along_axis``) before the sum. This
    evaluates a layer over gathered/tiled inputs without materialising or re-multiplying them.
    """
    units: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, gather=None) -> jax.Array:
        parts = x if isinstance(x, (tuple, list)) else (x,)
        gather = gather if gather is not None else (None,) * len(parts)
        sizes = [p.shape[-1] for p in parts]
        kernel = self.param('kernel', trunc_normal_init(), (sum(sizes), self.units), jnp.float32)
        kernel = kernel.astype(self.dtype)
        out, start = 0.0, 0
        for part, idx, size in zip(parts, gather, sizes):
            y = matmul(part.astype(self.dtype), kernel[start:start + size])
            start += size
            if idx is not None:
                y = jnp.take_along_axis(y, idx.reshape(idx.shape + (1,) * (y.ndim - idx.ndim)), axis=1)
            out = out + y
        return nn.silu(layer_norm(self.dtype)(out))


class MLP(nn.Module):
    """``layers`` x DenseLN(units), optionally followed by a Linear output head.

    [..., I] -> [..., out] (or [..., units] when out is None). ``symlog_inputs`` applies symlog first.
    """
    layers: int
    units: int
    out: int | None = None
    out_scale: float = 1.0
    symlog_inputs: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, gather=None) -> jax.Array:
        """x [..., I] (or parts + gather indices for the first layer, see DenseLN)."""
        if self.symlog_inputs:
            x = symlog(x)
        for i in range(self.layers):
            x = DenseLN(self.units, self.dtype)(x, gather if i == 0 else None)
        if self.out is not None:
            x = linear(self.out, self.dtype, use_bias=True, init='uniform', scale=self.out_scale,
                       name='out')(x).astype(jnp.float32)
        return x


class GRULN(nn.Module):
    """LayerNorm GRU cell of spec 4.2 (dreamerv3-torch GRUCell with norm=True, update_bias=-1).

    parts = LN(W [x, h]) (W without bias), split into (reset, cand, update);
    r = sigmoid(reset); c = tanh(r * cand); u = sigmoid(update - 1); h' = u c + (1 - u) h.
    x: [..., inputs], h: [..., D] (float32) -> h': [..., D] float32.
    ``h_proj`` = ``project_h(h)`` (the h-part of W [x, h]) may be passed in when it was computed
    beforehand (e.g. once per unique start state of an imagination).
    """
    deter: int
    inputs: int
    dtype: Dtype = jnp.float32

    def setup(self):
        self.kernel = self.param('kernel', trunc_normal_init(),
                                 (self.inputs + self.deter, 3 * self.deter), jnp.float32)
        self.norm = layer_norm(jnp.float32)

    def project_h(self, h: jax.Array) -> jax.Array:
        """W_h h: [..., D] -> [..., 3D] (float32; see ``matmul``)."""
        return matmul(h.astype(self.dtype), self.kernel[self.inputs:].astype(self.dtype))

    def __call__(self, x: jax.Array, h: jax.Array, h_proj: jax.Array | None = None) -> jax.Array:
        kernel = self.kernel.astype(self.dtype)
        if h_proj is None:
            parts = matmul(jnp.concatenate([x.astype(self.dtype), h.astype(self.dtype)], -1), kernel)
        else:
            parts = matmul(x.astype(self.dtype), kernel[:self.inputs]) + h_proj
        return self._gates(parts, h)

    def with_offset(self, x: jax.Array, h: jax.Array, offset: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
        """Same as __call__ but with sg(kernel) and ``offset`` (zeros) added to the matmul output.

        Returns (h', [x, h]). Used by ``rssm.observe`` to take the kernel gradient out of the scan:
        d loss / d offset_t is the matmul-output cotangent of step t, so the kernel gradient is one
        big matmul [x, h]^T d offset over all steps instead of one small one per step.
        """
        inp = jnp.concatenate([x.astype(self.dtype), h.astype(self.dtype)], -1)
        parts = matmul(inp, jax.lax.stop_gradient(self.kernel).astype(self.dtype)) + offset
        return self._gates(parts, h), inp

    def _gates(self, parts: jax.Array, h: jax.Array) -> jax.Array:
        parts = self.norm(parts)
        reset, cand, update = jnp.split(parts, 3, axis=-1)
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * h


# ----------------------------------------------------------------------------- images


class ConvEncoder(nn.Module):
    """4 stride-2 convs (kernel 4, SAME, no bias, channel LN, SiLU), depth x (1, 2, 4, 8).

    image [..., 64, 64, 3] uint8 -> [..., 4*4*8*depth] (preprocessed as x/255 - 0.5).
    """
    depth: int = 32
    stages: int = 4
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, image: jax.Array) -> jax.Array:
        lead = image.shape[:-3]
        x = image.reshape((-1,) + image.shape[-3:]).astype(jnp.float32) / 255.0 - 0.5
        x = x.astype(self.dtype)
        for i in range(self.stages):
            x = nn.Conv(self.depth * 2**i, (4, 4), strides=(2, 2), padding='SAME', use_bias=False,
                        dtype=self.dtype, param_dtype=jnp.float32,
                        kernel_init=trunc_normal_init(truncate_abs=True))(x)
            x = nn.silu(layer_norm(self.dtype)(x))
        return x.reshape(lead + (-1,))


class ConvDecoder(nn.Module):
    """feat [..., F] -> image mean [..., 64, 64, 3] in the x/255 - 0.5 space (float32).

    Linear(F -> 4*4*8*depth) then transposed convs (kernel 4, stride 2) 8d->4d->2d->d with channel
    LN + SiLU, then a transposed conv to 3 channels with bias (uniform init, scale 1).
    """
    depth: int = 32
    stages: int = 4
    minres: int = 4
    channels: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, feat: jax.Array) -> jax.Array:
        lead = feat.shape[:-1]
        top = self.depth * 2**(self.stages - 1)
        x = linear(self.minres * self.minres * top, self.dtype, use_bias=True)(feat)
        x = x.reshape((-1, self.minres, self.minres, top))
        for i in reversed(range(self.stages - 1)):
            x = nn.ConvTranspose(self.depth * 2**i, (4, 4), strides=(2, 2), padding='SAME',
                                 use_bias=False, dtype=self.dtype, param_dtype=jnp.float32,
                                 kernel_init=trunc_normal_init(truncate_abs=True))(x)
            x = nn.silu(layer_norm(self.dtype)(x))
        x = nn.ConvTranspose(self.channels, (4, 4), strides=(2, 2), padding='SAME', use_bias=True,
                             dtype=self.dtype, param_dtype=jnp.float32,
                             kernel_init=uniform_init(1.0))(x)
        return x.astype(jnp.float32).reshape(lead + x.shape[1:])


# ----------------------------------------------------------------------------- encoder/decoder


class Encoder(nn.Module):
    """obs -> embed. Vector part: MLP(symlog(concat[state, reward, time_step])); image part: CNN.

    state [..., S] (S may be 0), reward [...], time_step [...], optional image [..., 64, 64, 3].
    Returns [..., E] with E = mlp_units (+ 16*8*depth with images).
    """
    mlp_layers: int
    mlp_units: int
    image: bool = False
    cnn_depth: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, obs: dict) -> jax.Array:
        vec = vector_inputs(obs)
        outs = []
        if self.image:
            outs.append(ConvEncoder(self.cnn_depth, dtype=self.dtype, name='cnn')(obs['image']))
        outs.append(MLP(self.mlp_layers, self.mlp_units, symlog_inputs=True, dtype=self.dtype,
                        name='mlp')(vec))
        return jnp.concatenate([o.astype(self.dtype) for o in outs], -1)


def vector_inputs(obs: dict) -> jax.Array:
    """concat[state, reward[..., None], time_step[..., None]] in float32: [..., S + 2]."""
    parts = []
    if 'state' in obs and obs['state'].shape[-1] > 0:
        parts.append(obs['state'].astype(jnp.float32))
    parts.append(obs['reward'].astype(jnp.float32)[..., None])
    parts.append(obs['time_step'].astype(jnp.float32)[..., None])
    return jnp.concatenate(parts, -1)


class VectorDecoder(nn.Module):
    """feat [..., F] -> {key: symlog-space prediction [..., dim]} (float32).

    ``keys`` is a tuple of (name, dim); one uniform(1.0) Linear output per key over a shared
    ``layers`` x ``units`` DenseLN trunk.
    """
    keys: tuple
    layers: int
    units: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, feat, gather=None) -> dict:
        x = MLP(self.layers, self.units, dtype=self.dtype, name='trunk')(feat, gather)
        return {k: linear(d, self.dtype, use_bias=True, init='uniform', scale=1.0,
                          name=f'out_{k}')(x).astype(jnp.float32) for k, d in self.keys}
