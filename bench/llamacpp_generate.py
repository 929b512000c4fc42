"""llama.cpp single-stream generation of a GGUF file (bench/gen_whole.py times this script from
start to exit).

``python bench/llamacpp_generate.py PROMPTS.jsonl MODEL.gguf [--k K] [--max-new-tokens T]``: the
``xllamacpp`` bindings (prebuilt llama.cpp), one request at a time (K per prompt, one after
another), temperature 0.8 and top-p 0.95 through the file's chat template, on all CPU cores.
Prints one JSON line: the tokens generated and llama.cpp's own decode rate.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("prompts")
    p.add_argument("gguf")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args()

    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.gguf
    params.n_ctx = 1024
    params.n_parallel = 1
    threads = len(os.sched_getaffinity(0))
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(params)
    with open(args.prompts, encoding="utf-8") as f:
        prompts = [json.loads(line)["prompt"] for line in f if line.strip()]
    tokens, decode_s, start = 0, 0.0, time.perf_counter()
    for i, prompt in enumerate(prompts):
        for j in range(args.k):
            reply = server.handle_chat_completions(
                {
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": args.max_new_tokens,
                    "temperature": 0.8,
                    "top_p": 0.95,
                    "seed": i * args.k + j,
                }
            )
            reply = json.loads(reply) if isinstance(reply, str) else reply
            tokens += reply["usage"]["completion_tokens"]
            decode_s += reply["timings"]["predicted_ms"] / 1000
    print(
        json.dumps(
            {
                "tokens": tokens,
                "generate_s": time.perf_counter() - start,
                "decode_tok_s": tokens / decode_s if decode_s else 0.0,
                "threads": threads,
            }
        )
    )


if __name__ == "__main__":
    main()
