"""The learning proof: does training on scripted ratings move the model toward what the rater
prefers, on prompts it never trained on? ``python -m bench.learning.run``; see run.py."""
