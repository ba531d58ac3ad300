"""``run_forgetting``: how much worse a fine-tuned backbone models general text under the base's LM head.

Biderman et al. (*LoRA Learns Less and Forgets Less*, TMLR 2024) measure forgetting as the loss of
the pre-training distribution. A classifier fine-tuned from a decoder keeps the decoder's backbone;
put back under the base model's own language-model head (untied from the fine-tuned embeddings), it
predicts the next token of held-out text as well as the base did only if fine-tuning left what the
backbone knew about language intact. Forgetting = the run's mean next-token loss minus the base's,
in nats per token, on the same passages; 0 for an unchanged backbone.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

from lorascope.artifacts import write_json
from lorascope.errors import DataError
from lorascope.lenses.compare import compare_variants
from lorascope.lenses.config import ForgettingConfig
from lorascope.run_folder import RunFolder

MEASURES = ("loss", "forgetting")
# Same weights, same passages: only float64 summation order could differ.
CONTROL_TOLERANCE = 1e-9


def heldout_texts(cfg: ForgettingConfig) -> tuple[list[str], str]:
    """The passages scored, and where they come from (for the report)."""
    if cfg.text_file:
        path = Path(cfg.text_file)
        if not path.is_file():
            raise DataError(f"text_file: {path}: no such file")
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        source = f"{path.name} (first {cfg.n_texts} non-empty lines)"
    else:
        from lorascope.data.load import load_split
        from lorascope.data.tasks import get_task

        texts = list(load_split(get_task("rte"), "validation", cfg.data_dir)["text_a"])
        source = f"RTE dev premises (first {cfg.n_texts}; news and Wikipedia text)"
    if not texts:
        raise DataError(f"{cfg.text_file or 'RTE dev'}: no text to score")
    return texts[: cfg.n_texts], source


def _causal_base(source: str) -> Any:
    """The base as ``*ForCausalLM`` in eval mode, its LM head untied from the embeddings (fine-tuning moves those)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])):
        raise DataError(f"base '{source}': has no language-model head ({', '.join(config.architectures or ['?'])}); "
                        "the forgetting lens needs a decoder saved as *ForCausalLM")
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True).eval()
    head = lm.get_output_embeddings()
    untied = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    untied.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    lm.set_output_embeddings(untied)
    lm.config.tie_word_embeddings = False
    return lm


def _backbone_state(run: RunFolder) -> dict[str, Any]:
    """The fine-tuned backbone's weights (LoRA merged in), named as in the base's backbone."""
    from lorascope.models.load import load_run

    model = load_run(run.path).model
    if hasattr(model, "merge_and_unload"):  # a PEFT model: fold the adapter into the weights
        model = model.merge_and_unload()
    return getattr(model, model.base_model_prefix).state_dict()


def lora_init_backbone_state(source: str) -> dict[str, Any]:
    """The base classifier wrapped in a fresh LoRA adapter (B = 0) and merged: the backbone LoRA starts from."""
    from lorascope.models.adapt import prepare_for_method
    from lorascope.models.load import load_classifier

    classifier = load_classifier(source, ("negative", "positive"), seed=0).model
    wrapped, _ = prepare_for_method(classifier, "lora", dropout=0.0)
    merged = wrapped.merge_and_unload()
    return getattr(merged, merged.base_model_prefix).state_dict()


def mean_token_loss(lm: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> float:
    """Mean next-token negative log-likelihood (nats per predicted token) over ``texts``, pads excluded."""
    import torch

    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
            logits = lm(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[:, :-1]
            targets = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].bool()  # the attention mask, never pad ids: EOS pads decoders
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            total += float(nll[mask].double().sum())  # per-token losses in float32, their sum in float64
            count += int(mask.sum())
    if count == 0:
        raise DataError("held-out text: no token to predict (every passage is one token or empty)")
    return total / count


def run_forgetting(cfg: ForgettingConfig, out: Path | str) -> dict[str, Any]:
    """Score the base and every finished run under ``cfg.runs`` on the held-out text; write ``<out>/forgetting.json``.

    Returns:
        ``{"config", "text_source", "n_texts", "base_loss", "controls": [...], "runs": [{run, method, seed,
        summary: {loss, perplexity, forgetting}}], "comparison": ...}``.

    Raises:
        DataError: the base has no LM head, no finished runs, or no text.
    """
    from lorascope.models.load import load_tokenizer
    from lorascope.models.registry import resolve_model

    source = resolve_model(cfg.base)
    base_lm = _causal_base(source)
    records = [(r, r.record()) for r in RunFolder.finished_under(cfg.runs)]
    records = [(r, m) for r, m in records if m.ok and cfg.task in (None, m.task)]
    if not records:
        raise DataError(f"{cfg.runs}: no finished training runs (expected */metrics.json with status ok)")
    foreign = sorted({m.base_model_source for _, m in records} - {source})
    if foreign:
        raise DataError(f"{cfg.runs}: runs trained from '{foreign[0]}', not from base '{cfg.base}'")
    texts, text_source = heldout_texts(cfg)
    tokenizer = load_tokenizer(source, is_decoder=True)

    scratch = copy.deepcopy(base_lm)  # every run's backbone is loaded into this copy in turn, under the base's head

    def score(backbone: dict[str, Any] | None) -> float:
        lm = base_lm if backbone is None else scratch
        if backbone is not None:
            lm.get_decoder().load_state_dict(backbone, strict=True)
        return mean_token_loss(lm, tokenizer, texts, cfg.max_length, cfg.batch_size)

    base_loss = score(None)
    # Control: the base's own backbone put back through the same path must score exactly as the base.
    replica = score({k: v.clone() for k, v in base_lm.get_decoder().state_dict().items()})
    # Control: LoRA at initialisation (B = 0), merged, changes nothing.
    at_init = score(lora_init_backbone_state(source))
    controls = [{"name": name, "forgetting": loss - base_loss, "passed": abs(loss - base_loss) < CONTROL_TOLERANCE}
                for name, loss in (("base_backbone_reinserted", replica), ("lora_at_init", at_init))]
    for c in controls:
        if not c["passed"]:
            raise DataError(f"forgetting control '{c['name']}' failed: it scores {c['forgetting']:+.3g} nats per token "
                            "away from the base, where it must score the same; the lens is broken")
    runs = []
    methods = {record.label: str(record.method) for _, record in records}
    for run, record in records:
        loss = score(_backbone_state(run))
        runs.append({"run": run.name, "method": record.label, "seed": record.seed,
                     "summary": {"loss": loss, "perplexity": math.exp(loss), "forgetting": loss - base_loss}})
    result = {"config": cfg.model_dump(), "text_source": text_source, "n_texts": len(texts), "base_loss": base_loss,
              "base_perplexity": math.exp(base_loss), "controls": controls, "runs": runs,
              "comparison": compare_variants(runs, MEASURES, methods, pair=cfg.pair)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "forgetting.json", result)
    return result



