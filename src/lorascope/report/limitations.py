"""What the study's numbers cannot say, computed from them: power of each test at the study's n,
interval coverage, tasks whose models learned little, differences inside the seed noise."""

from __future__ import annotations

from typing import Any

from lorascope.checks.learned import LEARNED_MARGIN, at_majority_level
from lorascope.report.text import num
from lorascope.variants import primary_of


def weak_methods(data: dict[str, Any]) -> dict[str, list[str]]:
    """Per task with a drift analysis, the methods whose mean dev metric is not 2 points above majority."""
    out: dict[str, list[str]] = {}
    for task, d in data["drift"].items():
        base = data["baselines"].get(task, {}).get("majority", {})
        main = next((r["main_metric"] for r in data["runs"] if r["task"] == task and r["status"] == "ok"), None)
        for method, s in d["methods"].items():
            metric = (s.get("metric") or {}).get("mean")
            if main and metric is not None and main in base and at_majority_level(metric, base[main]):
                out.setdefault(task, []).append(method)
    return out


def _verdicts(d: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in (d["comparison"].get("verdicts") or {}).values() if "status" in v]


def power_items(data: dict[str, Any]) -> list[str]:
    """One sentence per group of tasks with the same n and corrected alpha: which tests can reach alpha."""
    groups: dict[tuple, list[str]] = {}
    items = []
    for task, d in data["drift"].items():
        vs = _verdicts(d)
        if vs:
            groups.setdefault((vs[0]["n"], vs[0]["alpha"], vs[0]["n_comparisons"], vs[0]["corrected_alpha"],
                               vs[0]["seeds_needed"]["exact_floor"]), []).append(task)
        else:
            n = d["comparison"].get("n_pairs", 0)
            items.append(f"{task}: {n} seed pair(s) — too few for any test across seeds; only sample-level intervals apply.")
    for (n, alpha, m, corrected, floor_n), tasks in groups.items():
        one, two = 2.0 ** -n, 2.0 ** (1 - n)
        family = f"α = {alpha:g}" + (f"/{m} = {corrected:.4g} (Bonferroni over {m} tasks)" if m > 1 else "")
        exact = (f"can reach it: its smallest p is {one:.3g} one-sided ({two:.3g} two-sided)" if one <= corrected else
                 f"cannot reach it whatever the data: its smallest p is {one:.3g} one-sided ({two:.3g} two-sided), "
                 f"and {floor_n} seed pairs are the minimum")
        items.append(f"{', '.join(tasks)}: {n} seed pairs, every verdict at {family}. The paired t-test (primary) has "
                     f"no floor but assumes roughly normal per-seed differences, which {n} values cannot check; the exact "
                     f"sign-flip test needs no such assumption and {exact}.")
    return items


def disagreement_items(data: dict[str, Any]) -> list[str]:
    out = []
    for task, d in data["drift"].items():
        for v in _verdicts(d):
            if not v.get("tests_agree", True):
                out.append(f"{task}, {v['hypothesis']}: the primary test says {v['status']}, the "
                           f"{(v.get('secondary') or {}).get('test', 'other test')} says {v['secondary_status']}: "
                           "not confirmed by both.")
    return out


def noise_items(data: dict[str, Any]) -> list[str]:
    """Tasks where the LoRA − full drift difference is smaller than one seed-to-seed sd of drift."""
    out = []
    for task, d in data["drift"].items():
        ms, floor, lora = d["methods"], d.get("noise_floor") or {}, primary_of(d)
        if not {lora, "full"} <= set(ms) or not all(floor.get(m) for m in (lora, "full")):
            continue
        diff = abs(ms["full"]["drift"]["mean"] - ms[lora]["drift"]["mean"])
        spread = max(floor[lora]["sd"], floor["full"]["sd"])
        if diff < spread:
            out.append(f"{task}: the drift difference between methods ({diff:.4f}) is below the seed-to-seed sd of "
                       f"drift from the base ({spread:.4f}): one seed of either method could cross it.")
    return out


def learning_items(data: dict[str, Any]) -> list[str]:
    return [f"{task} †: {' and '.join(methods)} did not beat the majority baseline by {100 * LEARNED_MARGIN:.0f} points; "
            "drift of a model that learned little says little about how LoRA and full fine-tuning differ."
            for task, methods in weak_methods(data).items()]


def limitations(data: dict[str, Any]) -> str:
    cfg = data["config"]
    n_samples = sorted({d["n_samples"] for d in data["drift"].values()})
    hw = (data.get("provenance") or {}).get("hardware", {})
    items = power_items(data) + disagreement_items(data) + [
        "Seed-level intervals are Student t (Fieller for the ratio Δ%), which hold their coverage at small n under "
        "normality; the interval over seeds and samples is a hierarchical bootstrap calibrated the same way. A plain "
        "bootstrap over 3 seeds would cover about 74% for a nominal 95% and is not used.",
        f"Drift compares n = {', '.join(map(str, n_samples)) or '–'} dev samples per task; sample-level uncertainty is "
        "the bootstrap over samples (per run, below the drift tables) and is part of the hierarchical interval.",
        f"Base model: {cfg.get('model')}; training settings: {cfg.get('train')}. Results for other models may differ.",
        f"Hardware: {hw.get('processor', '?')}, {hw.get('cpu_count', '?')} CPUs"
        + (f", {hw['cuda_device']}" if hw.get("cuda_device") else ", no GPU") + ".",
        "Reference-study columns (marked *) come from TinyLlama-1.1B on an L4 GPU: other model, other data sizes.",
    ]
    items += [f"{task}: {d['n_samples_note']}." for task, d in data["drift"].items() if d.get("n_samples_note")]
    for task, why in data.get("drift_skipped", {}).items():
        if task not in data["drift"]:
            items.append(f"No drift analysis for {task}: {why}")
    items += learning_items(data) + noise_items(data)
    failed = [r["folder"] for r in data["runs"] if r["status"] != "ok"]
    if failed:
        items.append(f"Failed units (excluded from the statistics): {', '.join(failed)}.")
    return "## Limitations\n\n" + "\n".join(f"- {i}" for i in items)


def spread_text(floor: dict[str, Any] | None) -> str:
    """The noise floor of one method: sd over seeds with its interval."""
    if not floor:
        return "–"
    lo, hi = floor["sd_ci"]
    return f"{num(floor['sd'], 4)} [{num(lo, 4)}, {num(hi, 4)}]"
