"""How many updates does the critic need to carry a reward back along a trajectory?

    python -m experiments.probe_critic [--horizons=2,10] [--steps=20000] [--distance=90] \
        [--head=twohot|mse] [--out=results/inspect/critic_probe.json]

The critic in isolation, with everything else perfect: a chain of ``length`` states visited in
order (state t -> t + 1, the last one absorbing), reward 1 on entering a state at ``distance`` or
more steps from the start, 0 before, continue factor 0.997 (the discount) everywhere. Each state
has its own fixed random feature vector, so nothing generalises between states. Every update
samples 1024 start states and "imagines" ``I`` (the imagination horizon) steps along the true
chain with the true rewards, then applies this codebase's critic update unchanged:
lambda-returns (lambda 0.95) bootstrapped from the fast critic, the slow-critic regulariser with
its 0.02 EMA, the two-hot critic with zero-initialised output, Adam lr 3e-5 eps 1e-5, clip 100
(``mamba_jax.actor_critic``, spec 6.4-6.5).

The true value of state t is ``0.997^(max(distance - t, 1) - 1) / (1 - 0.997)``: ~333 at the
goal, ~255 at the start for distance 90. Reported per checkpoint: the critic's value at the start
state, one step before the goal and at the goal, and the mean over states of value / true value.
Point Robot uses I = 2 (a one-step TD target); Wind and Escape Room use I = 10.
``--head=mse`` swaps in the diagnostic squared-error critic (``agent.critic_head='mse'``: one
output regressing symlog of the target) with everything else unchanged.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import bench_common
from mamba_jax import actor_critic as ac_lib
from mamba_jax.agent import optimizers
from mamba_jax.config import agent_config

FEATURES = 64
STARTS = 1024


def true_values(length: int, distance: int, discount: float) -> np.ndarray:
    """[length] value of each chain state: discounted sum of the rewards entered from t + 1 on."""
    t = np.arange(length)
    return discount ** (np.maximum(distance - t, 1) - 1) / (1.0 - discount)


def probe(horizon: int, steps: int, checkpoints, length: int, distance: int, seed: int = 0,
          lr: float | None = None, head: str = "twohot"):
    """Trains a fresh critic of kind ``head`` ('twohot' or 'mse') with imagination horizon
    ``horizon`` (Adam lr ``lr``, default the official 3e-5); returns (one row per checkpoint, the
    true values [length])."""
    cfg = agent_config("official", imag_horizon=horizon, critic_head=head,
                       **({} if lr is None else {"critic_lr": lr}))
    ac = ac_lib.ActorCritic(config=cfg, action_dim=1, discrete=False)
    discount, lam = float(cfg.discount), float(cfg.discount_lambda)
    k_feat, k_init = jax.random.split(jax.random.PRNGKey(seed))
    table = jax.random.normal(k_feat, (length, FEATURES))  # one fixed feature vector per state
    params = ac.init(k_init, FEATURES)
    critic, slow = params["critic"], params["slow_critic"]
    opt = optimizers(cfg)["critic"]
    opt_state = opt.init(critic)

    @jax.jit
    def step(critic, slow, opt_state, key):
        slow = ac_lib.slow_update(slow, critic, cfg.slow_critic_fraction)
        start = jax.random.randint(key, (STARTS,), 0, length)
        states = jnp.minimum(start[None] + jnp.arange(horizon)[:, None], length - 1)  # [I, N]
        feats = table[states]  # [I, N, F]
        reward = (states >= distance).astype(jnp.float32)  # reward on entering state i
        cont = jnp.full(states.shape, discount, jnp.float32)
        value = ac.value(critic, feats)
        returns = ac_lib.lambda_returns(reward, cont, value, lam)
        weights = ac_lib.return_weights(cont)
        loss, g = jax.value_and_grad(ac.critic_loss)(critic, slow, feats, returns, weights)
        upd, opt_state = opt.update(g, opt_state, critic)
        return optax.apply_updates(critic, upd), slow, opt_state, loss

    truth = true_values(length, distance, discount)
    rows = []
    for i in range(1, steps + 1):
        critic, slow, opt_state, loss = step(critic, slow, opt_state,
                                             jax.random.PRNGKey(seed * 1_000_003 + i))
        if i in checkpoints:
            v = np.asarray(ac.value(critic, table), np.float64)
            rows.append({"update": i, "loss": float(loss),
                         "value_at_start": float(v[0]), "value_before_goal": float(v[distance - 1]),
                         "value_at_goal": float(v[-1]),
                         "mean_fraction_of_true_value": float(np.mean(v / truth))})
    return rows, truth


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--horizons", default="2,10")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--length", type=int, default=100)
    p.add_argument("--distance", type=int, default=90)
    p.add_argument("--head", default="twohot", choices=("twohot", "mse"),
                   help="critic kind (agent.critic_head)")
    p.add_argument("--out", default="results/inspect/critic_probe.json")
    args = p.parse_args()
    if not 1 <= args.distance < args.length:
        raise SystemExit(f"--distance must be in [1, --length), got {args.distance}")
    checkpoints = {c for c in (100, 300, 1000, 3000, 10000, 20000, 50000, args.steps)
                   if c <= args.steps}
    t0 = time.time()
    result = {"steps": args.steps, "length": args.length, "distance": args.distance,
              "head": args.head,
              "machine": bench_common.machine_info(), "horizons": {},
              "note": "critic alone on a chain with true rewards and dynamics; official critic "
                      "settings; tabular random features"}
    for h in (int(x) for x in args.horizons.split(",")):
        rows, truth = probe(h, args.steps, checkpoints, args.length, args.distance,
                            head=args.head)
        result["true_value"] = {"start": float(truth[0]), "before_goal": float(truth[args.distance - 1]),
                                "goal": float(truth[-1])}
        result["horizons"][str(h)] = rows
        for r in rows:
            print(f"I={h:2d} update {r['update']:6d}  loss {r['loss']:.3f}  v(start) "
                  f"{r['value_at_start']:8.3f}  v(goal-1) {r['value_before_goal']:8.3f}  v(goal) "
                  f"{r['value_at_goal']:8.3f}  mean v/V {r['mean_fraction_of_true_value']:.4f}",
                  flush=True)
    print("true values:", result["true_value"])
    result["seconds"] = time.time() - t0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    bench_common.write_json(args.out, result)


if __name__ == "__main__":
    main()
