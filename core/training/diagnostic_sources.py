"""The public reports the training diagnostics rest on (docs/diagnostics.md cites each in full)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """A public report a rule rests on; docs/diagnostics.md cites it in full."""

    authors: str
    title: str
    year: int
    url: str


SOURCES: dict[str, Source] = {
    "rafailov2023": Source(
        "Rafailov, Sharma, Mitchell, Ermon, Manning, Finn",
        "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
        2023,
        "https://arxiv.org/abs/2305.18290",
    ),
    "pal2024": Source(
        "Pal, Karkhanis, Dooley, Roberts, Naidu, White",
        "Smaug: Fixing Failure Modes of Preference Optimisation with DPO-Positive",
        2024,
        "https://arxiv.org/abs/2402.13228",
    ),
    "razin2024": Source(
        "Razin, Malladi, Bhaskar, Chen, Arora, Hanin",
        "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization",
        2024,
        "https://arxiv.org/abs/2410.08847",
    ),
    "rafailov2024q": Source(
        "Rafailov, Hejna, Park, Finn",
        "From r to Q*: Your Language Model is Secretly a Q-Function",
        2024,
        "https://arxiv.org/abs/2404.12358",
    ),
    "azar2023": Source(
        "Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos",
        "A General Theoretical Paradigm to Understand Learning from Human Preferences",
        2023,
        "https://arxiv.org/abs/2310.12036",
    ),
    "rafailov2024": Source(
        "Rafailov, Chittepu, Park, Sikchi, Hejna, Knox, Finn, Niekum",
        "Scaling Laws for Reward Model Overoptimization in Direct Alignment Algorithms",
        2024,
        "https://arxiv.org/abs/2406.02900",
    ),
    "ouyang2022": Source(
        "Ouyang et al.",
        "Training language models to follow instructions with human feedback",
        2022,
        "https://arxiv.org/abs/2203.02155",
    ),
    "trl-faq": Source(
        "Hugging Face TRL",
        "Training FAQ: What Metrics Should I Look at? / What Is the Concern with Negative KL Divergence?",
        2024,
        "https://huggingface.co/docs/trl/how_to_train",
    ),
    "gao2022": Source(
        "Gao, Schulman, Hilton",
        "Scaling Laws for Reward Model Overoptimization",
        2022,
        "https://arxiv.org/abs/2210.10760",
    ),
    "zheng2023": Source(
        "Zheng et al.",
        "Secrets of RLHF in Large Language Models Part I: PPO",
        2023,
        "https://arxiv.org/abs/2307.04964",
    ),
    "singhal2023": Source(
        "Singhal, Goyal, Xu, Durrett",
        "A Long Way to Go: Investigating Length Correlations in RLHF",
        2023,
        "https://arxiv.org/abs/2310.03716",
    ),
    "cui2025": Source(
        "Cui et al.",
        "The Entropy Mechanism of Reinforcement Learning for Reasoning Language Models",
        2025,
        "https://arxiv.org/abs/2505.22617",
    ),
    "kirk2023": Source(
        "Kirk et al.",
        "Understanding the Effects of RLHF on LLM Generalisation and Diversity",
        2023,
        "https://arxiv.org/abs/2310.06452",
    ),
    "holtzman2019": Source(
        "Holtzman, Buys, Du, Forbes, Choi",
        "The Curious Case of Neural Text Degeneration",
        2019,
        "https://arxiv.org/abs/1904.09751",
    ),
    "stiennon2020": Source(
        "Stiennon et al.",
        "Learning to summarize from human feedback",
        2020,
        "https://arxiv.org/abs/2009.01325",
    ),
    "zhu2024": Source(
        "Zhu, Jordan, Jiao",
        "Iterative Data Smoothing: Mitigating Reward Overfitting and Overoptimization in RLHF",
        2024,
        "https://arxiv.org/abs/2401.16335",
    ),
    "molybog2023": Source(
        "Molybog et al.",
        "A Theory on Adam Instability in Large-Scale Machine Learning",
        2023,
        "https://arxiv.org/abs/2304.09871",
    ),
    "kumar2025": Source(
        "Kumar, Owen, Chowdhury, Güra",
        "ZClip: Adaptive Spike Mitigation for LLM Pre-Training",
        2025,
        "https://arxiv.org/abs/2504.02507",
    ),
    "wortsman2023": Source(
        "Wortsman et al.",
        "Small-scale proxies for large-scale Transformer training instabilities",
        2023,
        "https://arxiv.org/abs/2309.14322",
    ),
}
