"""Plots probe_series.sh results: return, reward-head action gradient and reward fits against
updates, one line per arm. usage: python results/diag_dense/plot_series.py TAG [TAG ...]
(reads results/inspect/series_<TAG>/step*.json; writes results/diag_dense/series.{png,json})."""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
INSPECT = os.path.join(HERE, "..", "inspect")


def load(tag):
    rows = [json.load(open(f)) for f in glob.glob(os.path.join(INSPECT, f"series_{tag}", "step*.json"))]
    rows.sort(key=lambda r: r["updates"])
    return [{"updates": r["updates"], "meta_return": r["meta_return"],
             "return_per_sub_episode": r["return_per_sub_episode"],
             "reward_term_cos_to_goal": r["reward_term"]["cos_model_gradient_to_goal"],
             "reward_term_towards_goal_fraction": r["reward_term"]["model_gradient_towards_goal_fraction"],
             "reward_term_norm": r["reward_term"]["model_gradient_norm"],
             "critic_term_norm": r["critic_term"]["model_gradient_norm"],
             "cos_action_to_goal": r["cos_action_to_goal"],
             "tanh_saturated_fraction": r["tanh_saturated_fraction"],
             "distance_to_goal_mean": r["distance_to_goal_mean"],
             "one_step_reward_abs_error": r["reward_fit"]["model_r1_abs_error"],
             "posterior_reward_abs_error": r["posterior_reward_fit"]["abs_error"],
             "posterior_reward_bias": r["posterior_reward_fit"].get("bias"),
             "posterior_reward_corr": r["posterior_reward_fit"].get("corr"),
             "one_step_reward_corr": r["reward_fit"]["model_r1_corr_next_reward"],
             "copy_reward_corr": r["reward_fit"]["copy_current_reward_corr_next_reward"],
             # within sub-episodes (no reset steps): the posterior head at t+1 against the truth,
             # and r_1 against that head (None in probes made before session 26)
             "next_posterior_corr": r["reward_fit"].get("next_posterior_corr_next_reward"),
             "one_step_vs_next_posterior_corr": r["reward_fit"].get("model_r1_corr_next_posterior"),
             "rings": r.get("posterior_reward_by_distance_from_start"),
             # session 28 (None in older probes): the imagined step's decoded-position Jacobian
             # (true 0.1), the dense reward's true function through the model's step, the
             # exact Bayesian agent's one-step gradient (dr_1/da's norm ratio and cosine to it)
             # and its belief's arc, and the decoder's observed reward at s_1 as another r_1
             "jacobian_diag": _get(r, "dynamics_fit", "jacobian_diag_mean"),
             "through_step_norm": _get(r, "dynamics_fit", "dense_reward_through_model_step",
                                       "model_gradient_norm"),
             "through_step_cos": _get(r, "dynamics_fit", "dense_reward_through_model_step",
                                      "cos_model_gradient_to_goal"),
             "bayes_norm_ratio": _get(r, "bayes_reference", "reward_term_norm_ratio"),
             "bayes_cos": _get(r, "bayes_reference", "reward_term_cos_to_it"),
             "bayes_arc_deg": _get(r, "bayes_reference", "arc_deg_mean"),
             "decoder_r1_norm": _get(r, "decoder_r1_term", "model_gradient_norm"),
             "decoder_r1_cos": _get(r, "decoder_r1_term", "cos_model_gradient_to_goal")} for r in rows]


def _get(r, *keys):
    for k in keys:
        r = r.get(k) if isinstance(r, dict) else None
    return r


def ring(r, lo):
    """The posterior-reward row of the ring starting at distance ``lo`` from the start."""
    return next((x for x in r["rings"] or [] if x["from"] == lo), {})


# rings with fewer probed steps than this are left out of the ring spreads (noisy means)
MIN_RING_STEPS = 200


def ring_spreads(r):
    """(max - min over the rings of the posterior head's mean, the same of the true reward's mean),
    over rings with at least MIN_RING_STEPS steps; (None, None) with fewer than two such rings."""
    rows = [x for x in r["rings"] or [] if x.get("steps", 0) >= MIN_RING_STEPS]
    if len(rows) < 2:
        return None, None
    spread = lambda k: max(x[k] for x in rows) - min(x[k] for x in rows)
    return spread("prediction_mean"), spread("reward_mean")


def main(tags):
    series = {t: load(t) for t in tags}
    for rows in series.values():
        for r in rows:  # the head's prediction in the far ring minus the 2-4 ring, and the truth's
            far, mid = ring(r, 6.0), ring(r, 2.0)
            ok = "prediction_mean" in far and "prediction_mean" in mid
            r["far_minus_mid_prediction"] = far["prediction_mean"] - mid["prediction_mean"] if ok else None
            r["far_minus_mid_reward"] = far["reward_mean"] - mid["reward_mean"] if ok else None
            r["far_ring_shrink"] = far.get("shrink")
            r["far_ring_fraction"] = far.get("steps", 0) / max(1, sum(x["steps"] for x in r["rings"] or []))
            r["ring_spread_prediction"], r["ring_spread_reward"] = ring_spreads(r)
    panels = [("distance_to_goal_mean", "mean distance to goal"),
              ("reward_term_cos_to_goal", "cos(dr_1/da, goal direction)"),
              ("cos_action_to_goal", "cos(action, goal direction)"),
              ("reward_term_norm", "|dr_1/da| (true: 0.1)"),
              ("one_step_reward_abs_error", "|r_1 - r| one imagined step"),
              ("posterior_reward_abs_error", "|r_post - r| posterior"),
              ("posterior_reward_corr", "corr(r_post, r) posterior"),
              ("one_step_reward_corr", "corr(r_1, r') one imagined step"),
              ("next_posterior_corr", "corr(r_post', r') in sub-episode"),
              ("ring_spread_prediction", "r_post spread over rings"),
              ("ring_spread_reward", "true reward spread over rings"),
              ("far_minus_mid_prediction", "r_post(>6) - r_post(2-4)"),
              ("far_ring_shrink", "shrink to 0, ring > 6"),
              ("jacobian_diag", "d p_1/da diagonal (true 0.1)"),
              ("bayes_norm_ratio", "|dr_1/da| / Bayes gradient"),
              ("bayes_cos", "cos(dr_1/da, Bayes gradient)")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.1 * len(panels)), sharex=True)
    for ax, (key, label) in zip(axes, panels):
        for i, (t, rows) in enumerate(series.items()):
            pts = [(r["updates"], r[key]) for r in rows if r[key] is not None]
            ax.plot([u for u, _ in pts], [v for _, v in pts], marker=".", label=t,
                    color=plt.cm.tab20(i % 20), ls="--" if t.startswith("mamba") else "-")
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
        if key.startswith(("cos", "far_minus")) or key.endswith("_corr"):
            ax.axhline(0, color="k", lw=0.5)
    axes[-1].set_xlabel("updates")
    fig.suptitle("Dense control (train ratio 0.1; goal radius 10 unless the tag says): probed checkpoints", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    rows_of_legend = -(-len(labels) // 3)
    top = 1 - (0.012 * rows_of_legend + 0.02)
    fig.legend(handles, labels, loc="upper center", ncol=3, fontsize=7, bbox_to_anchor=(0.5, top + 0.012))
    fig.tight_layout(rect=(0, 0, 1, top - 0.005))
    fig.savefig(os.path.join(HERE, "series.png"), dpi=110)
    with open(os.path.join(HERE, "series.json"), "w") as fh:
        json.dump(series, fh, indent=1)
    for t, rows in series.items():
        print(t)
        for r in rows:
            print(f"  {r['updates']:5d} ret {r['meta_return']:8.1f} cos_r {r['reward_term_cos_to_goal']:+.2f} "
                  f"frac {r['reward_term_towards_goal_fraction']:.2f} |dr| {r['reward_term_norm']:.4f} "
                  f"cos_a {r['cos_action_to_goal']:+.2f} sat {r['tanh_saturated_fraction']:.2f} "
                  f"d {r['distance_to_goal_mean']:.2f} err1 {r['one_step_reward_abs_error']:.2f} "
                  f"errp {r['posterior_reward_abs_error']:.2f} far-mid pred {_f(r['far_minus_mid_prediction'])} "
                  f"true {_f(r['far_minus_mid_reward'])} shrink>6 {_f(r['far_ring_shrink'])} "
                  f"in>6 {r['far_ring_fraction']:.2f} corr_p {_f(r['posterior_reward_corr'])} "
                  f"corr1 {_f(r['one_step_reward_corr'])} corr_copy {_f(r['copy_reward_corr'])} "
                  f"corr_p_in {_f(r['next_posterior_corr'])} corr1_p {_f(r['one_step_vs_next_posterior_corr'])} "
                  f"spread p/t {_f(r['ring_spread_prediction'])}/{_f(r['ring_spread_reward'])} "
                  f"J {_f(r['jacobian_diag'], 3)} thr {_f(r['through_step_norm'], 3)}/{_f(r['through_step_cos'])} "
                  f"bayes {_f(r['bayes_norm_ratio'])}/{_f(r['bayes_cos'])} arc {_f(r['bayes_arc_deg'], 1)} "
                  f"dec_r1 {_f(r['decoder_r1_norm'], 3)}/{_f(r['decoder_r1_cos'])}")


def _f(x, digits=2):
    return "  -  " if x is None else f"{x:+.{digits}f}"


if __name__ == "__main__":
    main(sys.argv[1:])
