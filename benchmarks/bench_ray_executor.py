"""Wall time of one reduced study on the local executor and on Ray with 2 single-threaded workers.

The study: tiny-llama (random weights, 2 layers), RTE, LoRA and full fine-tuning × 4 seeds (8
training units), then drift and the weight lens (one unit each). Three variants, each into its own
folder, one after the other in this process:
  (a) local executor, torch's default threads (what `lorascope study run` does by default);
  (b) local executor, 1 thread per unit (the per-unit work Ray's workers do);
  (c) Ray started on this machine with 2 CPUs, 1 CPU and 1 thread per unit.
Prints each wall time, (c)'s speed-up over (a) and (b), and Ray's overhead per unit: the time
Ray's two workers were not running a unit, (2 × wall(c) − Σ unit seconds) / units, Ray's
start-up included. Results are checked identical between (b) and (c).

Run: .venv/bin/python benchmarks/bench_ray_executor.py [--seeds 4]
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console

from lorascope.study import load_study, run_study


def study_file(folder: Path, name: str, executor: dict, seeds: list[int]) -> Path:
    cfg = {
        "name": name, "model": "tiny-llama", "tasks": ["rte"], "methods": ["lora", "full"], "seeds": seeds,
        "out": str(folder / name), "stages": ["train", "drift", "weights"], "executor": executor,
        "train": {"train_limit": 128, "eval_limit": 32, "epochs": 2, "batch_size": 8, "max_length": 64},
        "method_train": {"lora": {"lr": 5e-3}, "full": {"lr": 1e-3}},
        "drift": {"n_samples": 32, "max_length": 64, "bootstrap": 100},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(path: Path) -> tuple[float, float, int, Path]:
    """(wall seconds, Σ seconds the units reported, units, study folder)."""
    console = Console(record=True, width=200, file=io.StringIO())  # recorded, not shown
    t0 = time.perf_counter()
    out = run_study(load_study(path), console=console)
    wall = time.perf_counter() - t0
    seconds = [float(s) for s in re.findall(r"\((\d+(?:\.\d+)?) s", console.export_text())]
    return wall, sum(seconds), len(seconds), out


def dev_metrics(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text())["dev"] for p in sorted((out / "train").glob("*/metrics.json"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = {}
        for name, executor in (("local_default", {"kind": "local"}),
                               ("local_1thread", {"kind": "local", "cpus_per_unit": 1}),
                               ("ray_2x1", {"kind": "ray", "local_cpus": 2, "cpus_per_unit": 1})):
            rows[name] = run(study_file(folder, name, executor, seeds))
            print(f"{name:<14} wall {rows[name][0]:7.1f} s   units {rows[name][2]:>2}   Σ unit time {rows[name][1]:7.1f} s")
        identical = dev_metrics(rows["local_1thread"][3]) == dev_metrics(rows["ray_2x1"][3])
        wall_ray, busy_ray, units_ray, _ = rows["ray_2x1"]
        print(f"Ray vs local (default threads): {rows['local_default'][0] / wall_ray:.2f}× faster")
        print(f"Ray vs local (1 thread):        {rows['local_1thread'][0] / wall_ray:.2f}× faster")
        print(f"Ray overhead per unit (start-up included): {(2 * wall_ray - busy_ray) / units_ray:.2f} s")
        print(f"dev metrics identical, local 1 thread vs Ray: {identical}")


if __name__ == "__main__":
    main()
