"""DPO with TRL's DPOTrainer on exported pairs, as a user would script it (bench/dpo_whole.py times
this script from start to exit).

``python bench/trl_dpo.py PAIRS.jsonl MODEL_DIR OUT_DIR (--steps N | --epochs E) [--batch B]
[--max-length L] [--lr LR]``: PAIRS.jsonl is ``export ratings --format preference`` (prompt,
chosen, rejected), which is already in TRL's conversational form, so TRL applies the chat template
as RLHF Studio does. Full fine-tuning, fp32, on the CPU; the trained model is saved to OUT_DIR at the end.
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("pairs")
    p.add_argument("model")
    p.add_argument("out")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--steps", type=int)
    size.add_argument("--epochs", type=float)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-5)
    args = p.parse_args()

    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    data = load_dataset("json", data_files=args.pairs, split="train")
    config = DPOConfig(
        output_dir=args.out,
        per_device_train_batch_size=args.batch,
        max_steps=args.steps or -1,
        num_train_epochs=args.epochs or 1.0,
        learning_rate=args.lr,
        lr_scheduler_type="linear",
        warmup_steps=0.1,
        max_length=args.max_length,
        beta=0.1,
        bf16=False,
        fp16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        seed=0,
        dataloader_num_workers=0,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.out)


if __name__ == "__main__":
    main()
