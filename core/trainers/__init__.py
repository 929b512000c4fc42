"""The pieces of the training loop in core/training.py, one file per concern.

- ``config``: the per-algorithm config dataclasses (their fields build the Train tab's form)
- ``batching``: tokenization, length-bucketed batch schedules, completion-only log-probs
- ``objectives``: reward, dpo, kto, reinforce (offline: they train on ratings)
- ``rloo``: online RL (sample, score, leave-one-out baseline, clipped ratio)
- ``reward_model``: the scalar-head reward model, its loading and scoring
"""
