"""Quick latency check of the serving runtime against a merged model and PEFT (informal, not a test).

A randomly initialised BERT of MiniLM-L6 shape (6 layers, hidden 384, 12 heads, intermediate 1536)
with three rank-8 q/v LoRA adapters; latency depends on shapes, not values. Every variant runs once
per round, in rotating order, so drifting machine load hits all of them alike; medians are reported
with the ratio to the merged plain model at the same batch size.

Usage: python benchmarks/bench_serve_quick.py [--threads N] [--seq 64] [--rounds 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

from lorascope.serve import MultiAdapterRuntime

NAMES = ["sst2", "mrpc", "qnli"]


def make_base() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
    )
    return BertForSequenceClassification(config).eval()


def make_adapters(root: Path) -> dict[str, Path]:
    folders = {}
    for seed, name in enumerate(NAMES):
        model = get_peft_model(
            make_base(), LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])
        )
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if "lora_B" in param_name:
                    param.normal_(0, 0.02, generator=torch.Generator().manual_seed(seed))
        folders[name] = root / name
        model.save_pretrained(folders[name])
    return folders


def time_variants(variants: dict, rounds: int) -> dict[str, float]:
    """Median seconds per call of each variant, interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    for fn in variants.values():  # warm-up
        fn()
        fn()
    for step in range(rounds):
        shift = step % len(order)
        for name in order[shift:] + order[:shift]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folders = make_adapters(Path(tmp))
        merged = PeftModel.from_pretrained(make_base(), folders["sst2"]).merge_and_unload().eval()
        peft = PeftModel.from_pretrained(make_base(), folders["sst2"], adapter_name="sst2")
        for name in NAMES[1:]:
            peft.load_adapter(folders[name], adapter_name=name)
        peft.set_adapter("sst2")
        peft.eval()
        runtime = MultiAdapterRuntime.from_folders(make_base(), folders)
        runtime_nocache = MultiAdapterRuntime.from_folders(make_base(), folders, merged_cache_size=1)

    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, seq={args.seq}, rounds={args.rounds}")
    for batch in (1, 16):
        ids = torch.randint(1000, 30000, (batch, args.seq))
        mask = torch.ones_like(ids)
        mixed = [NAMES[i % len(NAMES)] for i in range(batch)]
        cycle = {"i": 0}

        def switching(rt: MultiAdapterRuntime = runtime) -> torch.Tensor:
            cycle["i"] += 1
            return rt.predict_logits(ids, mask, NAMES[cycle["i"] % len(NAMES)])

        def plain(model: torch.nn.Module, **kwargs) -> torch.Tensor:
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask, **kwargs).logits

        variants = {
            "merged plain model": lambda: plain(merged),
            "PEFT unmerged (1 adapter)": lambda: plain(peft),
            "runtime merged stream": lambda: runtime.predict_logits(ids, mask, "sst2"),
            "runtime switching x3 (cached)": switching,
            "runtime switching x3 (cache=1)": lambda: switching(runtime_nocache),
            "runtime bgmv, 1 adapter": lambda: runtime.predict_logits(ids, mask, "sst2", mode="bgmv"),
        }
        if batch > 1:
            variants["runtime mixed batch x3 (bgmv)"] = lambda: runtime.predict_logits(ids, mask, mixed)
            variants["PEFT mixed batch x3 (adapter_names)"] = lambda: plain(peft, adapter_names=mixed)
        rounds = args.rounds if batch == 1 else max(10, args.rounds // 8)
        medians = time_variants(variants, rounds)
        base = medians["merged plain model"]
        print(f"\nbatch {batch} x seq {args.seq} ({rounds} rounds)")
        for name, seconds in medians.items():
            ratio = seconds / base
            print(f"  {name:38s} {seconds * 1e3:8.2f} ms   x{ratio:5.3f} latency   {1 / ratio:5.3f} throughput")


if __name__ == "__main__":
    main()
