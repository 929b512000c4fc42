"""PNG plots of the learning bench: each run's own signal of "getting better" per step (a panel
per rater and run, one line per seed), and the held-out score distributions before and after
training (a panel per rater, seeds pooled)."""

from __future__ import annotations

from pathlib import Path

from bench.learning.plan import Plan

# metric plotted per algorithm: the run's own signal of "getting better"
CURVE = {"dpo": "rewards/margins", "reward": "accuracy", "rloo": "reward", "reinforce": "reward"}
SHORT = {
    "dpo_large": "DPO, large",
    "dpo_small": "DPO, small",
    "reward": "reward model",
    "rloo": "RLOO",
    "reinforce": "REINFORCE",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reward_vs_step(results: dict[str, dict], plan: Plan, out: Path) -> Path:
    """A grid: a row per rater, a column per run; in each panel the run's metric per optimizer
    step, one line per training seed."""
    plt = _pyplot()
    raters, runs = list(results), list(plan.runs)
    fig, axes = plt.subplots(
        len(raters), len(runs), figsize=(3.2 * len(runs), 2.4 * len(raters)), squeeze=False
    )
    for row, rater in enumerate(raters):
        for col, key in enumerate(runs):
            ax = axes[row][col]
            for i, (seed, by_key) in enumerate(results[rater]["seeds"].items()):
                run = by_key.get(key, {})
                points = run.get("metrics", {}).get(CURVE.get(run.get("algo", ""), "loss"), [])
                if points:
                    steps, values = zip(*points, strict=True)
                    marker = "o" if len(steps) < 30 else None  # a short run still shows its points
                    ax.plot(steps, values, marker=marker, ms=3, color=f"C{i}", label=f"seed {seed}")
            ax.set_title(f"{rater}: {SHORT[key]}", fontsize=9)
            ax.set_ylabel(CURVE.get(_algo(results[rater], key), "loss"), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if row == len(raters) - 1:
                ax.set_xlabel("optimizer step", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _algo(result: dict, key: str) -> str:
    return next((r[key]["algo"] for r in result["seeds"].values() if key in r), "")


def score_grid(results: dict[str, dict], plan: Plan, out: Path) -> Path:
    """Held-out rater scores per policy, one panel per rater: violins with the mean marked."""
    plt = _pyplot()
    raters = list(results)
    cols = min(2, len(raters))
    rows = (len(raters) + cols - 1) // cols
    policies = [k for k in plan.runs if k != "reward"]
    width = 1.6 + 1.2 * (len(policies) + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, 3.6 * rows), squeeze=False)
    for ax, rater in zip(axes.flat, raters, strict=False):
        r = results[rater]
        groups = [("base", r["base"].scores)] + [
            (
                SHORT[k],
                [x for by_key in r["seeds"].values() for x in by_key.get(k, {}).get("scores", [])],
            )
            for k in policies
        ]
        data = [scores if scores else [float("nan")] for _, scores in groups]
        ax.violinplot(data, showmeans=True, showextrema=False)
        ax.boxplot(data, widths=0.12, showfliers=False)
        ax.set_xticks(
            range(1, len(groups) + 1), [name for name, _ in groups], rotation=15, fontsize=8
        )
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(f"{rater} (0-1)")
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(raters) :]:
        ax.axis("off")
    fig.suptitle(f"Held-out scores before and after training ({plan.role} prompts, seeds pooled)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
