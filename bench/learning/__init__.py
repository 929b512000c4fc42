"""The learning proof: does training on scripted ratings move the model toward what the rater
prefers, on prompts it never trained on? Development raters for tuning, test raters for the
reported figures (docs/learning-protocol.md); ``python -m bench.learning.run``, see run.py."""
