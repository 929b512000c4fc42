"""Generation as a transformers user would script it (bench/gen_whole.py times this script from
start to exit).

``python bench/plain_generate.py PROMPTS.jsonl MODEL_DIR [--k K] [--max-new-tokens T] [--seed S]``:
fp32, one ``model.generate`` call per prompt with ``num_return_sequences=K``, sampling at
temperature 0.8 and top-p 0.95 through the chat template. Prints one JSON line: the tokens kept
(each row up to its first stop token, as RLHF Studio counts them) and the seconds spent generating.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("prompts")
    p.add_argument("model")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    stops = {tok.eos_token_id, tok.pad_token_id, *_as_list(model.generation_config.eos_token_id)}
    stops.discard(None)
    with open(args.prompts, encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    torch.manual_seed(args.seed)
    kept, start = 0, time.perf_counter()
    for prompt in prompts:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=0.8,
                top_p=0.95,
                max_new_tokens=args.max_new_tokens,
                num_return_sequences=args.k,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            kept += next((i for i, t in enumerate(row) if t in stops), len(row))
    print(json.dumps({"tokens": kept, "generate_s": time.perf_counter() - start}))


def _as_list(value):
    return value if isinstance(value, list) else [value]


if __name__ == "__main__":
    main()
