"""How many updates does the reward head need when the reward is plainly visible in its input?

    python -m experiments.probe_twohot_head [--fractions=0.88,0.03,0.0036] [--steps=3000] \
        [--lr=1e-4] [--out=results/inspect/twohot_head_probe.json]

The reward head of the world model in isolation (``MLP(2 x 128 DenseLN SiLU) -> 255`` two-hot
logits over symlog bins, output layer zero-initialised, Adam lr 1e-4 eps 1e-8, global-norm clip
1000: the official settings, spec 4.3/4.4), trained on synthetic batches of 1024 inputs in which
a fraction of the steps is rewarded (reward uniform in [0.8, 1], the range of Point Robot's
1 - d) and the reward is added to 8 of the 768 input features (3 x reward on top of N(0, 1)
noise), i.e. the best case the world model's features could offer. Reports, on a fixed held-out
batch of 4096, the mean prediction at rewarded and at unrewarded inputs after each checkpoint
step. The fractions are those of the scripted policy's data (0.88), a middle case and the
agent's own Point Robot data at the official config (0.0036, measured by ``inspect_run``).

    python -m experiments.probe_twohot_head --offsets=0,-5,8.5 [--spread=1] [--steps=3000]

The offset mode asks whether the head learns a small variation on top of a large reward level as
fast as the same variation near zero (the dense control with ``env_kwargs.reward_offset=9``
puts the robot's rewards at 7.5-9.5, where symlog compresses differences about tenfold). Every
input is rewarded, ``reward = offset + u`` with ``u ~ U[-spread, spread]`` visible in the same
8 input dims (``3 u / spread``); reports the held-out prediction's mean, its correlation with
the reward and its slope on the reward (1 = the variation is reproduced, 0 = only the level).
``--symlog_input`` shows the inputs ``3 symlog(reward)`` instead, as the encoder sees the
observed last reward.

``--head=mse`` trains, on the same data with the same MLP, init and optimiser, a one-output
head regressing symlog(reward) by squared error, the way the decoder reconstructs the observed
last reward (``world_model._head_losses``); its prediction is symexp of the output. It asks
whether the two-hot head, not the signal, is what is slow.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import bench_common
from experiments.inspect_run import correlation
from mamba_jax import distributions as dist
from mamba_jax.nets import MLP, symlog

FEATURES = 768  # feat size of the point-robot RSSM (16 x 16 stoch + 512 deter)


def synthetic_batch(key: jax.Array, n: int, fraction: float):
    """(inputs [n, 768], rewards [n]): ``fraction`` of rows rewarded, reward visible in 8 dims."""
    k1, k2, k3 = jax.random.split(key, 3)
    reward = jnp.where(jax.random.uniform(k1, (n,)) < fraction,
                       0.8 + 0.2 * jax.random.uniform(k2, (n,)), 0.0)
    x = jax.random.normal(k3, (n, FEATURES)).at[:, :8].add(3.0 * reward[:, None])
    return x, reward


def offset_batch(key: jax.Array, n: int, offset: float, spread: float, symlog_input: bool = False):
    """(inputs [n, 768], rewards [n]): reward ``offset + u``, ``u ~ U[-spread, spread]``, with
    ``3 u / spread`` added to 8 input dims (the same signal-to-noise for every offset and
    spread), or with ``symlog_input`` ``3 symlog(reward)``: the reward as the world model's
    encoder sees the observed last reward (its inputs are symlogged), so the variation's
    visibility shrinks by ``1 / (1 + |offset|)``."""
    k1, k2 = jax.random.split(key)
    u = jax.random.uniform(k1, (n,), minval=-spread, maxval=spread)
    reward = offset + u
    signal = symlog(reward) if symlog_input else u / spread
    x = jax.random.normal(k2, (n, FEATURES)).at[:, :8].add(3.0 * signal[:, None])
    return x, reward


HEADS = ("twohot", "mse")


def head_fns(head: str):
    """(net, loss(params, x, r), predict(params, x) -> [n]) of a ``head``: 'twohot' (the reward
    head: 255 logits, cross-entropy on the two-hot target of symlog r, prediction the two-hot mean)
    or 'mse' (one output regressing symlog r by squared error, as the decoder does; prediction
    symexp of it). Both zero-initialise the output layer, as the reward head does."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    if head == "twohot":
        net = MLP(2, 128, out=dist.NUM_BINS, out_scale=0.0, dtype=jnp.float32)
        loss = lambda p, x, r: -jnp.mean(dist.twohot_log_prob(net.apply(p, x), r))  # noqa: E731
        predict = lambda p, x: dist.twohot_mean(net.apply(p, x))  # noqa: E731
    else:
        net = MLP(2, 128, out=1, out_scale=0.0, dtype=jnp.float32)
        loss = lambda p, x, r: jnp.mean((net.apply(p, x)[..., 0] - symlog(r))**2)  # noqa: E731
        predict = lambda p, x: dist.symexp(net.apply(p, x)[..., 0])  # noqa: E731
    return net, loss, predict


def _train(batch_fn, steps: int, lr: float, checkpoints, report, seed: int = 0,
           head: str = "twohot"):
    """Trains a fresh head (official init/optimiser) on ``batch_fn(key)`` batches; returns
    ``[{"update", "loss", **report(predict)}]`` at ``checkpoints``, where ``predict(x) -> [n]``
    is the head's prediction (``head_fns``)."""
    net, loss_fn, predict_fn = head_fns(head)
    params = net.init(jax.random.PRNGKey(seed), jnp.zeros((1, FEATURES)))
    opt = optax.chain(optax.clip_by_global_norm(1000.0), optax.adam(lr, eps=1e-8))
    opt_state = opt.init(params)

    @jax.jit
    def step(p, s, k):
        x, r = batch_fn(k)
        loss, g = jax.value_and_grad(loss_fn)(p, x, r)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    rows = []
    for i in range(1, steps + 1):
        params, opt_state, loss = step(params, opt_state, jax.random.PRNGKey(seed * 1_000_003 + i))
        if i in checkpoints:
            predict = lambda x: predict_fn(params, x)  # noqa: E731
            rows.append({"update": i, "loss": float(loss), **report(predict)})
    return rows


def probe(fraction: float, steps: int, lr: float, checkpoints, batch: int = 1024, seed: int = 0,
          head: str = "twohot"):
    """Trains a fresh head; returns rows {update, loss, pred_at_reward, pred_at_zero}."""
    x_eval, r_eval = synthetic_batch(jax.random.PRNGKey(10_000 + seed), 4096, max(fraction, 0.05))

    def report(predict):
        pred = predict(x_eval)
        return {"pred_at_reward": float(pred[r_eval > 0].mean()),
                "pred_at_zero": float(pred[r_eval == 0].mean())}

    return _train(lambda k: synthetic_batch(k, batch, fraction), steps, lr, checkpoints, report, seed,
                  head)


def offset_probe(offset: float, spread: float, steps: int, lr: float, checkpoints,
                 batch: int = 1024, seed: int = 0, symlog_input: bool = False,
                 head: str = "twohot"):
    """Trains a fresh head on ``offset_batch`` data; returns rows {update, loss, pred_mean,
    corr, slope}: the held-out prediction's mean, its Pearson correlation with the reward (None
    while the prediction is constant) and its least-squares slope on the reward."""
    x_eval, r_eval = offset_batch(jax.random.PRNGKey(10_000 + seed), 4096, offset, spread,
                                  symlog_input)
    r = np.asarray(r_eval, np.float64)

    def report(predict):
        pred = np.asarray(predict(x_eval), np.float64)
        return {"pred_mean": float(pred.mean()), "corr": correlation(pred, r),
                "slope": float(np.cov(pred, r)[0, 1] / r.var(ddof=1))}

    return _train(lambda k: offset_batch(k, batch, offset, spread, symlog_input), steps, lr,
                  checkpoints, report, seed, head)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fractions", default="0.88,0.03,0.0036")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--offsets", default=None,
                   help="comma-separated reward levels: run the offset mode instead of --fractions")
    p.add_argument("--spread", type=float, default=1.0, help="offset mode: u ~ U[-spread, spread]")
    p.add_argument("--symlog_input", action="store_true",
                   help="offset mode: the inputs show 3 symlog(reward), as the encoder sees the "
                        "observed last reward, instead of 3 u / spread")
    p.add_argument("--head", default="twohot", choices=HEADS,
                   help="twohot: the reward head; mse: a squared-error symlog regression head "
                        "(as the decoder reconstructs the observed reward)")
    p.add_argument("--out", default=None, help="default results/inspect/twohot_head_probe.json "
                   "(offset mode: twohot_offset_probe.json; --head=mse: mse_ in place of twohot_)")
    args = p.parse_args()
    checkpoints = {c for c in (10, 100, 300, 1000, 2000, 3000, args.steps) if c <= args.steps}
    t0 = time.time()
    name = "twohot_offset_probe.json" if args.offsets is not None else "twohot_head_probe.json"
    out = args.out or os.path.join("results", "inspect", name.replace("twohot", args.head))
    if args.offsets is not None:
        result = {"head": args.head, "lr": args.lr, "steps": args.steps, "spread": args.spread,
                  "symlog_input": args.symlog_input,
                  "machine": bench_common.machine_info(),
                  "note": f"{args.head} head alone, official init/optimiser; every input rewarded, "
                          "reward = offset + U[-spread, spread], the variation visible in 8 of "
                          "768 input dims", "offsets": {}}
        for o in (float(x) for x in args.offsets.split(",")):
            rows = offset_probe(o, args.spread, args.steps, args.lr, checkpoints,
                                symlog_input=args.symlog_input, head=args.head)
            result["offsets"][str(o)] = rows
            for r in rows:
                corr = "-" if r["corr"] is None else f"{r['corr']:.3f}"
                print(f"offset {o:+.2f}: update {r['update']:5d}  loss {r['loss']:.3f}  "
                      f"pred mean {r['pred_mean']:+.3f}  corr {corr}  slope {r['slope']:.3f}",
                      flush=True)
        result["seconds"] = time.time() - t0
        bench_common.write_json(out, result)
        return
    result = {"head": args.head, "lr": args.lr, "steps": args.steps,
              "machine": bench_common.machine_info(),
              "note": f"{args.head} head alone, official init/optimiser; reward visible in 8 of 768 "
                      "input dims; held-out batch has >= 5% rewarded rows", "fractions": {}}
    for f in (float(x) for x in args.fractions.split(",")):
        rows = probe(f, args.steps, args.lr, checkpoints, head=args.head)
        result["fractions"][str(f)] = rows
        for r in rows:
            print(f"rewarded fraction {f}: update {r['update']:5d}  loss {r['loss']:.3f}  "
                  f"pred@reward {r['pred_at_reward']:.3f}  pred@zero {r['pred_at_zero']:.4f}",
                  flush=True)
    result["seconds"] = time.time() - t0
    bench_common.write_json(out, result)


if __name__ == "__main__":
    main()
