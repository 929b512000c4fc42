"""PNG plots of the learning proof: each run's reward-like metric per step, and the held-out
score distributions before and after training."""

from __future__ import annotations

from pathlib import Path

# metric plotted per algorithm (the run's own signal of "getting better"), and a second one
CURVES = {
    "dpo": ("rewards/margins", "rewards/accuracies"),
    "reward": ("accuracy", "margin"),
    "rloo": ("reward", "kl"),
    "reinforce": ("reward", "kl"),
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def reward_vs_step(runs: list[dict], out: Path) -> Path:
    """``runs``: {"label", "algo", "metrics": {name: [(step, value), ...]}}; one panel each."""
    plt = _pyplot()
    n = max(1, len(runs))
    cols = 2 if n > 1 else 1
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.4 * rows), squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=False):
        first, second = CURVES.get(run["algo"], ("loss", "loss"))
        for name, axis, style in ((first, ax, "-"), (second, ax.twinx(), "--")):
            points = run["metrics"].get(name, [])
            if points:
                steps, values = zip(*points, strict=True)
                marker = "o" if len(steps) < 30 else None  # a short run still shows its points
                axis.plot(
                    steps,
                    values,
                    style,
                    marker=marker,
                    markersize=3,
                    color="C0" if axis is ax else "C1",
                    label=name,
                )
                axis.set_ylabel(name, color="C0" if axis is ax else "C1")
        ax.set_title(run["label"])
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(runs) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def score_distributions(
    groups: list[tuple[str, list[float]]], out: Path, rater: str = "core.raters:sentiment"
) -> Path:
    """Held-out rater scores per policy: violins with the mean marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(groups), 4))
    data = [scores if scores else [float("nan")] for _, scores in groups]
    ax.violinplot(data, showmeans=True, showextrema=False)
    ax.boxplot(data, widths=0.12, showfliers=False)
    ax.set_xticks(range(1, len(groups) + 1), [label for label, _ in groups], rotation=15)
    ax.set_ylabel(f"held-out score, {rater} (0-1)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("Held-out responses before and after training")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
