"""Benchmark of Agent.train_step (compile time, step time, FLOPs, fraction of matmul peak).

    python experiments/bench_agent.py [--out bench_out/bench_agent.json] [--quick]

Configs: the official point-robot agent (obs_dim 2, action_dim 2, B=16, T=300, imag_horizon 2,
encoder/decoder 4x512, reconstruction_window 3) and a DreamerV3-S-sized agent on the same data
shapes, each with float32 and bfloat16 compute. FLOPs are reported twice: XLA's
``cost_analysis()`` (which may count a ``lax.scan`` body once) and an analytic count of matmul and
convolution FLOPs from the jaxpr, with every scan body multiplied by its trip count. The matmul
peak is a timed square ``jnp.dot`` in the same process.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import bench_common  # noqa: E402
from mamba_jax.agent import Agent  # noqa: E402
from mamba_jax.config import agent_config  # noqa: E402


# ----------------------------------------------------------------------------- FLOP counting


def _dot_flops(eqn) -> float:
    lhs, rhs = (v.aval for v in eqn.invars[:2])
    (lc, rc), (lb, rb) = eqn.params['dimension_numbers']
    contract = math.prod(lhs.shape[d] for d in lc)
    batch = math.prod(lhs.shape[d] for d in lb)
    lfree = math.prod(s for d, s in enumerate(lhs.shape) if d not in lc and d not in lb)
    rfree = math.prod(s for d, s in enumerate(rhs.shape) if d not in rc and d not in rb)
    return 2.0 * batch * lfree * rfree * contract


def _conv_flops(eqn) -> float:
    out = eqn.outvars[0].aval
    rhs = eqn.invars[1].aval
    dn = eqn.params['dimension_numbers']
    # kernel spatial dims x input features per group
    k_spatial = math.prod(rhs.shape[d] for d in dn.rhs_spec[2:])
    k_in = rhs.shape[dn.rhs_spec[1]]
    return 2.0 * math.prod(out.shape) * k_spatial * k_in


def matmul_flops(jaxpr) -> float:
    """Matmul + conv FLOPs of a (closed) jaxpr, scan bodies multiplied by their length."""
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == 'dot_general':
            total += _dot_flops(eqn)
        elif name == 'conv_general_dilated':
            total += _conv_flops(eqn)
        mult = eqn.params.get('length', 1) if name == 'scan' else 1
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (list, tuple)) else [p]):
                inner = getattr(sub, 'jaxpr', None)
                if inner is not None and hasattr(inner, 'eqns'):
                    total += mult * matmul_flops(inner)
                elif hasattr(sub, 'eqns'):
                    total += mult * matmul_flops(sub)
    return total


# ----------------------------------------------------------------------------- helpers


def make_batch(b, t, obs_dim, action_dim, seed=0):
    rng = np.random.default_rng(seed)
    is_first = np.zeros((b, t), bool)
    is_first[:, 0] = True
    action = rng.uniform(-1, 1, size=(b, t, action_dim)).astype(np.float32)
    action[:, 0] = 0
    return {'state': rng.normal(size=(b, t, obs_dim)).astype(np.float32),
            'reward': rng.normal(size=(b, t)).astype(np.float32),
            'time_step': np.tile(np.arange(t) / t, (b, 1)).astype(np.float32),
            'is_first': is_first, 'is_terminal': np.zeros((b, t), bool), 'action': action}


def bench(name, cfg, obs_dim, action_dim, b, t, repeats) -> dict:
    agent = Agent(cfg, obs_dim=obs_dim, action_dim=action_dim, discrete=False)
    state = agent.init(jax.random.key(0))
    batch = jax.tree.map(jnp.asarray, make_batch(b, t, obs_dim, action_dim))
    key, wm_h = jax.random.key(1), jnp.int32(t)
    step = jax.jit(agent.train_step, donate_argnums=0)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch, key, wm_h)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
    analytic = matmul_flops(jax.make_jaxpr(agent.train_step)(state, batch, key, wm_h).jaxpr)
    state, m = compiled(state, batch, key, wm_h)  # warm-up
    jax.block_until_ready(m)
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, m = compiled(state, batch, jax.random.key(i + 2), wm_h)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    n_params = {k: int(sum(x.size for x in jax.tree.leaves(v))) for k, v in state.params.items()}
    return {'name': name, 'compute_dtype': cfg.compute_dtype, 'B': b, 'T': t,
            'params': n_params, 'compile_s': compile_s, 'step_s_median': med,
            'step_s_all': times, 'xla_flops': xla_flops, 'analytic_matmul_flops': analytic,
            'achieved_gflops_analytic': analytic / med / 1e9,
            'achieved_gflops_xla': xla_flops / med / 1e9,
            'wm_loss': float(m['wm/loss'])}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--out', default='bench_out/bench_agent.json')
    p.add_argument('--quick', action='store_true', help='official config only, 3 repeats')
    p.add_argument('--repeats', type=int, default=7)
    p.add_argument('--dtypes', default='float32,bfloat16')
    args = p.parse_args()
    repeats = 3 if args.quick else args.repeats
    dtypes = args.dtypes.split(',')

    peaks = {d: bench_common.matmul_peak(jnp.float32 if d == 'float32' else jnp.bfloat16)
             for d in dtypes}
    print('matmul peak GFLOP/s:', peaks, flush=True)
    point_robot = dict(enc_mlp_layers=4, dec_mlp_layers=4, imag_horizon=2, reconstruction_window=3)
    configs = [('official_point_robot', 'official', point_robot)]
    if not args.quick:
        configs.append(('dreamerv3_S_point_robot_shapes', 'S',
                        dict(imag_horizon=2, reconstruction_window=3)))
    results = []
    for name, preset, over in configs:
        for d in dtypes:
            cfg = agent_config(preset, compute_dtype=d, **over)
            r = bench(name, cfg, 2, 2, 16, 300, repeats)
            r['peak_gflops_same_dtype'] = peaks[d]
            r['fraction_of_peak'] = r['achieved_gflops_analytic'] / peaks[d]
            r['fraction_of_f32_peak'] = r['achieved_gflops_analytic'] / peaks.get(
                'float32', float('nan'))
            print(json.dumps({k: v for k, v in r.items() if k != 'step_s_all'}), flush=True)
            results.append(r)
    out = {'device': str(jax.devices()[0]), 'platform': platform.platform(),
           'cpu_count': os.cpu_count(), 'jax': jax.__version__,
           'xla_flags': os.environ.get('XLA_FLAGS', ''), 'matmul_peak_gflops': peaks,
           'results': results}
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
