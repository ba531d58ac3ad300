"""``run_forgetting``: how much worse a fine-tuned backbone models general text under the base's LM head.

Biderman et al. (*LoRA Learns Less and Forgets Less*, TMLR 2024) measure forgetting as the loss of
the pre-training distribution. A classifier fine-tuned from a decoder keeps the decoder's backbone;
put back under the base model's own language-model head (untied from the fine-tuned embeddings), it
predicts the next token of held-out text as well as the base did only if fine-tuning left what the
backbone knew about language intact. Forgetting = the run's mean next-token loss minus the base's,
in nats per token, on the same passages; 0 for an unchanged backbone.

Every backbone goes through one path: :func:`_backbone_state` (the run's weights, a LoRA merged in)
→ :func:`load_backbone` into the base model once its own scores are taken (one model on the device,
the base's backbone kept apart on the CPU) → :func:`mean_token_loss`. The controls
send known backbones down that path and stop the lens (``DataError``) when one scores other than
computed independently of it:

- ``base_backbone_reinserted``, ``lora_at_init``: unchanged weights score exactly as the base;
- ``chunked_loss_is_full_logits_loss``: the loss computed a few hundred positions at a time equals
  the one from the model's own full ``[batch, seq, vocab]`` logits;
- ``lm_head_kept``: after every load the scored head is, bit for bit, the base's, in storage of its
  own; and with the input embeddings moved by a known amount (so that a re-tied head would differ
  from the base's, and score visibly otherwise), the loss is the one computed with the base's head
  held apart (a head re-tied or copied from the embeddings fails);
- ``lora_known_update``: a LoRA adapter with a known non-zero update, saved as a run, is merged by
  the lens into W₀ + (α/r)·B·A as computed in float64 from B and A themselves (a merge at another
  scale, or twice, fails);
- ``backbone_is_the_runs_own``: each run's scored backbone is the one rebuilt from the run's own
  files (its ``model.safetensors``, or its adapter's tensors and config over the base), read
  without transformers or PEFT (another run's backbone fails).
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console
from rich.progress import Progress, TimeElapsedColumn

from lorascope.artifacts import Commit
from lorascope.errors import DataError
from lorascope.lenses.compare import compare_variants
from lorascope.lenses.config import ForgettingConfig
from lorascope.lenses.records import ForgettingRecord
from lorascope.run_folder import METRICS_FILE, RunFolder

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

    from lorascope.lenses.weights import LoraScaling

MEASURES = ("loss", "forgetting")
# Same weights, same passages: only float64 summation order could differ.
CONTROL_TOLERANCE = 1e-9
# One loss computed two ways (float32 logits blocked differently; weights one float32 rounding apart):
# relative agreement required. Far above float32 rounding (~1e-7), far below any planted change.
LOSS_RTOL = 1e-5
# A float32 merge against its float64 rebuild: largest |difference| relative to the matrix's largest
# entry. Rounding is ~1e-7; another run's or a mis-scaled update is orders of magnitude larger.
WEIGHT_RTOL = 1e-5
# A re-tied head must move the probe loss by at least this many times the loss tolerance, or the
# comparison of losses in ``lm_head_kept`` could not tell it from the base's head.
MIN_EFFECT_IN_TOLERANCES = 10
# The controls with a known change are scored on the first passages only: they test the path, and
# the path does not depend on how many passages it sees.
PROBE_TEXTS = 8
# Logits materialised at once by the chunked loss ([rows, vocab] float32: 64 MiB).
LOGITS_PER_CHUNK = 1 << 24
# The known changes: each changed matrix moves by this fraction of its Frobenius norm.
KNOWN_RELATIVE_CHANGE = 1.0
KNOWN_LORA_R, KNOWN_LORA_ALPHA = 4, 12.0  # scale α/r = 3: distinct from α, 1 and 2·α/r
CONTROL_SEED = 0
LABELS = ("negative", "positive")
PEFT_PREFIX = "base_model.model."
# PEFT versions differ in whether saved modules_to_save keys keep the wrapper segment.
_MODULES_TO_SAVE = re.compile(r"\.modules_to_save(\.[^.]+)?(?=\.)")


def heldout_texts(cfg: ForgettingConfig) -> tuple[list[str], str]:
    """The passages scored, and where they come from (for the report)."""
    if cfg.text_file:
        path = Path(cfg.text_file)
        if not path.is_file():
            raise DataError(f"text_file: {path}: no such file")
        from lorascope.config import read_text_file

        # The readers' one rule for a text file: UTF-8 (or a line-numbered error naming the file).
        text = read_text_file(path, what="text file", error=DataError)
        texts = [line.strip() for line in text.splitlines() if line.strip()]
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
    # PreTrainedModel.eval is unannotated in transformers.
    lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True).eval()  # type: ignore[no-untyped-call]
    head = lm.get_output_embeddings()
    untied = torch.nn.Linear(head.in_features, head.out_features, bias=False)
    untied.weight = torch.nn.Parameter(head.weight.detach().clone(), requires_grad=False)
    lm.set_output_embeddings(untied)
    lm.config.tie_word_embeddings = False
    return lm


def _backbone_state(run: RunFolder) -> dict[str, Any]:
    """The fine-tuned backbone's weights (LoRA merged in), named as in the base's backbone.

    Loaded on the CPU whatever the lens's device: only its weights are read, and loading them into
    the scored model copies them there, so the device never holds a second model.
    """
    import torch

    from lorascope.models.load import load_run

    model = load_run(run.path, device=torch.device("cpu")).model
    if hasattr(model, "merge_and_unload"):  # a PEFT model: fold the adapter into the weights
        model = cast("PeftModel", model).merge_and_unload()
    state: dict[str, Any] = getattr(model, model.base_model_prefix).state_dict()
    return state


def load_backbone(lm: Any, backbone: dict[str, Any]) -> None:
    """Put ``backbone`` (named as the decoder's state) into ``lm``'s decoder, leaving its LM head as it is."""
    lm.get_decoder().load_state_dict(backbone, strict=True)


def lora_init_backbone_state(source: str) -> dict[str, Any]:
    """The base classifier wrapped in a fresh LoRA adapter (B = 0) and merged: the backbone LoRA starts from
    (built on the CPU, as every backbone that is only read and then loaded into the scored model)."""
    import torch

    from lorascope.models.adapt import prepare_for_method
    from lorascope.models.load import load_classifier

    classifier = cast("PreTrainedModel", load_classifier(source, LABELS, seed=0, device=torch.device("cpu")).model)
    wrapped, _ = prepare_for_method(classifier, "lora", dropout=0.0)
    merged = wrapped.merge_and_unload()
    state: dict[str, Any] = getattr(merged, merged.base_model_prefix).state_dict()
    return state


# --- the loss -----------------------------------------------------------------------------------

NllSum = Callable[[Any, Any, Any], tuple[float, int]]


def token_nll_sum(lm: Any, input_ids: Any, attention_mask: Any, rows_per_chunk: int | None = None) -> tuple[float, int]:
    """Summed next-token negative log-likelihood of one batch, the LM head applied a few positions at a time.

    The decoder runs once; the head and the softmax run only on the positions whose next token is
    real (pads are excluded by the attention mask, never by pad ids: decoders pad with EOS), in
    chunks of ``rows_per_chunk`` positions, so no ``[batch, seq, vocab]`` tensor is ever made.

    Args:
        input_ids, attention_mask: ``[batch, seq]``.
        rows_per_chunk: positions per chunk; default: as many as make ``LOGITS_PER_CHUNK`` logits.

    Returns:
        (sum of −log p(next token) over predicted positions, float64; number of those positions).
    """
    import torch

    hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    mask = attention_mask[:, 1:].bool()  # [batch, seq - 1]: position t predicts token t + 1
    states = hidden[:, :-1][mask]  # [n, hidden]
    targets = input_ids[:, 1:][mask]  # [n]
    head = lm.get_output_embeddings()
    rows = rows_per_chunk or max(1, LOGITS_PER_CHUNK // head.weight.shape[0])
    total = 0.0
    for start in range(0, targets.shape[0], rows):
        logits = head(states[start:start + rows])  # [rows, vocab]
        nll = torch.nn.functional.cross_entropy(logits, targets[start:start + rows], reduction="none")
        total += float(nll.double().sum())  # per-token losses in float32, their sum in float64
    return total, int(targets.shape[0])


def full_logits_nll_sum(lm: Any, input_ids: Any, attention_mask: Any, head_weight: Any = None) -> tuple[float, int]:
    """:func:`token_nll_sum` the plain way: every position's logits ``[batch, seq, vocab]`` at once.

    Args:
        head_weight: ``[vocab, hidden]`` applied to the decoder's output instead of the model's own
            forward (which goes through its own head).
    """
    import torch

    if head_weight is None:
        logits = lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits[:, :-1]
    else:
        hidden = lm.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        logits = torch.nn.functional.linear(hidden[:, :-1], head_weight.to(hidden.device, hidden.dtype))
    targets = input_ids[:, 1:]
    mask = attention_mask[:, 1:].bool()
    # Classes on the last, contiguous axis: PyTorch's CPU softmax over a strided class axis (the
    # ``[batch, vocab, seq]`` layout) sums in float32 and is off by ~1e-5 relative on a 49k vocabulary,
    # ~60 times the contiguous kernel's error.
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return float(nll.view_as(targets)[mask].double().sum()), int(mask.sum())


def _batches(tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> Iterator[tuple[Any, Any]]:
    """``(input_ids, attention_mask)``, each ``[batch, seq]``, padded on the tokenizer's side."""
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        yield enc["input_ids"], enc["attention_mask"]


def mean_token_loss(lm: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int,
                    nll_sum: NllSum | None = None) -> float:
    """Mean next-token negative log-likelihood (nats per predicted token) over ``texts``, pads excluded.

    Args:
        nll_sum: how one batch's summed loss is computed: the chunked :func:`token_nll_sum` (the
            default), or :func:`full_logits_nll_sum` as a reference.
    """
    import torch

    nll_sum = nll_sum or token_nll_sum

    device = next(lm.parameters()).device
    total, count = 0.0, 0
    with torch.inference_mode():
        for input_ids, attention_mask in _batches(tokenizer, texts, max_length, batch_size):
            batch_total, batch_count = nll_sum(lm, input_ids.to(device), attention_mask.to(device))
            total += batch_total
            count += batch_count
    if count == 0:
        raise DataError("held-out text: no token to predict (every passage is one token or empty)")
    return total / count


# --- backbones with a known change, and each run's backbone rebuilt from its files ----------------

def _embedding_name(lm: Any) -> str:
    """The decoder-state name of the input embedding matrix."""
    decoder = lm.get_decoder()
    weight = decoder.get_input_embeddings().weight
    found: str = next(name for name, p in decoder.named_parameters() if p is weight)
    return found


def _known_noise(shape: tuple[int, ...], like: Any, relative: float, generator: Any) -> Any:
    """Gaussian noise of ``shape`` (float64) scaled to ``relative`` × ‖like‖_F."""
    import torch

    noise = torch.randn(shape, generator=generator, dtype=torch.float64)
    return noise * (relative * float(like.double().norm()) / float(noise.norm()))


def moved_embedding_state(lm: Any, backbone: dict[str, Any] | None = None) -> dict[str, Any]:
    """The base's backbone with its input embeddings ``[vocab, hidden]`` moved by seeded noise of
    ``KNOWN_RELATIVE_CHANGE`` × their norm: the embeddings, and nothing else, then differ from the head.

    Args:
        lm: the model whose decoder the backbone fits (names the embedding matrix).
        backbone: the base's backbone (default: ``lm``'s decoder as it is now).
    """
    import torch

    # Loading copies: only the moved matrix needs a tensor of its own.
    state = dict(backbone if backbone is not None else lm.get_decoder().state_dict())
    name = _embedding_name(lm)
    generator = torch.Generator().manual_seed(CONTROL_SEED)  # a CPU generator: the same noise on every device
    embeddings = state[name].detach().to("cpu")
    moved = embeddings.double() + _known_noise(tuple(embeddings.shape), embeddings, KNOWN_RELATIVE_CHANGE, generator)
    state[name] = moved.to(embeddings.dtype)
    return state


def write_known_lora_run(folder: Path, source: str, base_state: dict[str, Any]) -> dict[str, Any]:
    """A LoRA run folder (its record, ``adapter/``) over ``source`` whose update is known.

    A and B (``[r, in]``, ``[out, r]``) are seeded Gaussian, B scaled so that each adapted matrix
    moves by ``KNOWN_RELATIVE_CHANGE`` of its norm; r = ``KNOWN_LORA_R``, α = ``KNOWN_LORA_ALPHA``.

    Args:
        base_state: the base's backbone (W₀ of each adapted matrix).

    Returns:
        The backbone the run must merge to, named as ``base_state``: W₀ + (α/r)·B·A in float64 for
        each adapted matrix, computed here from B and A (not by PEFT); ``base_state``'s tensor elsewhere.
    """
    import torch

    from lorascope.models.adapt import prepare_for_method
    from lorascope.models.load import load_classifier

    # On the CPU: only its adapter is written, and the lens reads the run back like any other.
    classifier = cast("PreTrainedModel", load_classifier(source, LABELS, seed=0, device=torch.device("cpu")).model)
    prefix = classifier.base_model_prefix
    wrapped, _ = prepare_for_method(classifier, "lora", r=KNOWN_LORA_R, alpha=KNOWN_LORA_ALPHA, dropout=0.0)
    scale = KNOWN_LORA_ALPHA / KNOWN_LORA_R
    generator = torch.Generator().manual_seed(CONTROL_SEED)
    expected = dict(base_state)
    with torch.no_grad():
        for module_name, module in wrapped.named_modules():
            if not hasattr(module, "lora_A") or "default" not in module.lora_A:
                continue
            a_layer, b_layer = module.lora_A["default"], module.lora_B["default"]
            a = torch.randn(tuple(a_layer.weight.shape), generator=generator, dtype=torch.float64)
            b = torch.randn(tuple(b_layer.weight.shape), generator=generator, dtype=torch.float64)
            name = module_name.removeprefix(PEFT_PREFIX).removeprefix(prefix + ".") + ".weight"
            w0 = base_state[name].detach().to("cpu").double()
            b *= KNOWN_RELATIVE_CHANGE * float(w0.norm()) / float((scale * b @ a).norm())
            a_layer.weight.copy_(a.float())
            b_layer.weight.copy_(b.float())
            # From the float32 values PEFT holds, so that the reference differs from a correct merge by rounding only.
            expected[name] = w0 + scale * (b.float().double() @ a.float().double())
    wrapped.save_pretrained(folder / "adapter")  # type: ignore[arg-type]  # PEFT annotates str; any path works
    (folder / METRICS_FILE).write_text(json.dumps({
        "status": "ok", "method": "lora", "model": source, "seed": CONTROL_SEED, "base_model_source": source,
        "label_names": list(LABELS), "is_decoder": True}), encoding="utf-8")
    return expected


def run_files_backbone(run: RunFolder, base_state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The backbone a run's own files hold, read with safetensors alone (not ``load_run``, transformers or PEFT).

    Full fine-tuning: the ``<prefix>.*`` tensors of ``model/``. LoRA: W₀ + ΔW for each matrix the
    adapter adapts (ΔW = s·B·A, s = α/r or α/√r for rsLoRA; DoRA's row-rescaled update; the
    transpose for an embedding), as lorascope's own :mod:`lorascope.weight_update` computes it, in
    float64; tensors saved whole (``modules_to_save``) replace the base's; the base's elsewhere.

    Args:
        base_state: the base's backbone ``{name: tensor}``.
        prefix: the classifier's ``base_model_prefix`` (``model`` for Llama).

    Raises:
        DataError: an adapter this rebuild does not cover (per-module α, trainable LoRA biases, DoRA
            on transposed layers, an unknown adapter tensor), or a run folder with neither adapter nor model.
    """
    import torch

    from lorascope.models.folders import ADAPTER_WEIGHTS, check_adapter_folder, model_weight_files, read_safetensors
    from lorascope.weight_update import dora_delta, lora_delta

    def backbone_name(key: str) -> str | None:
        # A wrapped layer's own weight is saved under ``<module>.base_layer.weight`` (PEFT saves an
        # adapted embedding whole).
        name = _MODULES_TO_SAVE.sub("", key.removeprefix(PEFT_PREFIX)).replace(".base_layer.", ".")
        return name.removeprefix(prefix + ".") if name.startswith(prefix + ".") else None  # else: the classifier head

    if not run.adapter_dir.is_dir():
        if not run.model_dir.is_dir():
            raise DataError(f"{run.path}: has neither adapter/ nor model/; its backbone cannot be checked")
        found: dict[str, Any] = {}
        for path in model_weight_files(run.model_dir):
            for key, tensor in read_safetensors(path, "pt").items():
                name = backbone_name(key)
                if name is not None:
                    found[name] = tensor
        return found
    config = check_adapter_folder(run.adapter_dir)
    transposed = bool(config.get("fan_in_fan_out"))  # Conv1D layers (GPT-2) store W as [in, out]
    cannot = ("per-module lora_alpha (alpha_pattern)" if config.get("alpha_pattern") else
              "trainable LoRA biases (lora_bias)" if config.get("lora_bias") else
              "DoRA on fan_in_fan_out layers" if transposed and config.get("use_dora") else None)
    if cannot:
        raise DataError(f"{run.adapter_dir}: {cannot}: the forgetting control cannot rebuild this adapter")
    tensors = read_safetensors(run.adapter_dir / ADAPTER_WEIGHTS, "pt")
    scaling: LoraScaling = {"alpha": float(config["lora_alpha"]), "rslora": bool(config.get("use_rslora"))}
    out = dict(base_state)
    # Tensors saved whole first: they replace the base's, and an adapter's update applies to them.
    for key, tensor in tensors.items():
        name = backbone_name(key) if ".lora_" not in key else None
        if name is not None:
            out[name] = tensor
    for key, tensor in tensors.items():
        if ".lora_" not in key:
            continue
        kind = re.search(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B|lora_magnitude_vector)(\.weight)?$", key)
        if kind is None:
            raise DataError(f"{run.adapter_dir}: adapter tensor '{key}' is not one the forgetting control can rebuild")
        if kind.group(1) not in ("lora_A", "lora_embedding_A"):
            continue  # read with its A
        module = key[: kind.start()]
        name = backbone_name(module + ".weight")
        if name is None or name not in base_state:
            raise DataError(f"{run.adapter_dir}: adapts '{module}', which the base's backbone does not have")
        w0 = out[name].detach().to("cpu").double()
        a = tensor.double().numpy()
        if kind.group(1) == "lora_embedding_A":  # A [r, vocab], B [hidden, r]: ΔW = (s·B·A)ᵀ
            b = tensors[module + ".lora_embedding_B"].double().numpy()
            delta = lora_delta(a, b, rank=a.shape[0], **scaling).T
        elif module + ".lora_magnitude_vector" in tensors:
            delta = dora_delta(w0.numpy(), a, tensors[module + ".lora_B.weight"].double().numpy(),
                               tensors[module + ".lora_magnitude_vector"].double().numpy(), rank=a.shape[0], **scaling)
        else:
            delta = lora_delta(a, tensors[module + ".lora_B.weight"].double().numpy(), rank=a.shape[0], **scaling)
            delta = delta.T if transposed else delta
        out[name] = w0 + torch.from_numpy(delta)
    return out


def weight_mismatch(scored: dict[str, Any], expected: dict[str, Any]) -> tuple[float, str]:
    """The largest |scored − expected| of any tensor relative to that tensor's largest |expected|, and its name.

    A tensor missing from either side counts as infinitely different (0 for identical states).
    """
    import torch

    worst, where = 0.0, ""
    for name in sorted(set(scored) | set(expected)):
        if name not in scored or name not in expected or scored[name].shape != expected[name].shape:
            return math.inf, name
        got, want = scored[name].to(expected[name].device), expected[name]  # compared where the expectation is
        if got.dtype == want.dtype and torch.equal(got, want):
            continue
        diff = float((got.double() - want.double()).abs().max()) / max(float(want.double().abs().max()), 1e-30)
        if diff > worst:
            worst, where = diff, name
    return worst, where


def head_problem(lm: Any, base_head: Any) -> str | None:
    """What is wrong with ``lm``'s LM head, None when it is bit for bit ``base_head`` ``[vocab, hidden]``
    and holds its own storage (a head sharing the input embeddings' moves with them)."""
    import torch

    head = lm.get_output_embeddings().weight
    if head.data_ptr() == lm.get_input_embeddings().weight.data_ptr():
        return "is its input embedding matrix"
    if head.shape != base_head.shape or not torch.equal(head, base_head):
        return "is not the base model's head"
    return None


def _as_float32(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}


def _fail(name: str, why: str) -> DataError:
    return DataError(f"forgetting control '{name}' failed: {why}; the lens is broken")


def _loss_agrees(loss: float, expected: float) -> bool:
    return abs(loss - expected) <= LOSS_RTOL * max(abs(expected), 1.0)


def _min_effect(loss: float) -> float:
    """The least difference from a loss near ``loss`` that a control must be able to see (nats per token)."""
    return MIN_EFFECT_IN_TOLERANCES * LOSS_RTOL * max(abs(loss), 1.0)


# --- the lens ------------------------------------------------------------------------------------

def run_forgetting(cfg: ForgettingConfig, out: Path | str, *, overwrite: bool = False) -> ForgettingRecord:
    """Score the base and every finished run under ``cfg.runs`` on the held-out text; write ``<out>/forgetting.json``.

    Returns:
        The record written (or found, when a folder with the same settings and runs exists). Each
        control holds ``name`` and ``passed``, and as further fields ``forgetting`` (what the lens
        measured: the loss minus the base's on the same passages), ``expected`` (the same computed
        apart from the lens's path) and what it checked besides (see the module docstring); those
        with a known change are scored on the first ``PROBE_TEXTS`` passages.

    Raises:
        DataError: the base has no LM head, no finished runs, or no text; a control failed.
    """
    unit = Commit(Path(out), cfg.model_dump(mode="json"), overwrite=overwrite, inputs=RunFolder.fingerprint_under(cfg.runs))
    if unit.done():  # a folder made with other settings is an error before any work
        return ForgettingRecord.read(Path(out) / ForgettingRecord.FILE)
    from lorascope.models.device import resolve_device
    from lorascope.models.load import load_tokenizer
    from lorascope.models.registry import resolve_model

    device = resolve_device(cfg.device)  # an absent device fails before any model is loaded
    source = resolve_model(cfg.base)
    base_lm = _causal_base(source).to(device)
    records = [(r, r.record()) for r in RunFolder.finished_under(cfg.runs)]
    records = [(r, m) for r, m in records if m.ok and cfg.task in (None, m.task)]
    if not records:
        raise DataError(f"{cfg.runs}: no finished training runs (expected */metrics.json with status ok)")
    foreign = sorted({m.base_model_source for _, m in records} - {source}, key=str)
    if foreign:
        raise DataError(f"{cfg.runs}: runs trained from '{foreign[0]}', not from base '{cfg.base}'")
    texts, text_source = heldout_texts(cfg)
    probe = texts[:PROBE_TEXTS]
    tokenizer = load_tokenizer(source, is_decoder=True)

    base_head = base_lm.get_output_embeddings().weight.detach().clone()  # [vocab, hidden], held apart from any model
    prefix = base_lm.base_model_prefix
    head_check: dict[str, Any] = {"name": "lm_head_kept", "loads_checked": 0}

    def loss_of(lm: Any, passages: list[str], nll_sum: NllSum | None = None) -> float:
        return mean_token_loss(lm, tokenizer, passages, cfg.max_length, cfg.batch_size, nll_sum)

    # The base's own scores first, from the base model itself. Then that model becomes the scratch
    # copy every backbone is loaded into, so that the device holds one model, not two; the base's
    # backbone is kept apart on the CPU (never loaded into) for the controls and the rebuilds.
    base_loss = loss_of(base_lm, texts)
    base_probe = loss_of(base_lm, probe)
    full_probe = loss_of(base_lm, probe, full_logits_nll_sum)
    base_state = {k: v.detach().to("cpu", copy=True) for k, v in base_lm.get_decoder().state_dict().items()}
    scratch = base_lm

    def load(backbone: dict[str, Any], what: str) -> None:
        """Load into ``scratch`` and check that its head is still the base's, not the (moved) embeddings."""
        load_backbone(scratch, backbone)
        head_check["loads_checked"] += 1
        problem = head_problem(scratch, base_head)
        if problem:
            raise _fail("lm_head_kept", f"after loading {what}, the scored model's LM head {problem}")

    def score(backbone: dict[str, Any], what: str) -> float:
        load(backbone, what)
        return loss_of(scratch, texts)

    # Control: the base's own backbone put back through the same path must score exactly as the base.
    replica = score({k: v.clone() for k, v in base_state.items()}, "the base's own backbone")
    # Control: LoRA at initialisation (B = 0), merged, changes nothing.
    at_init = score(lora_init_backbone_state(source), "LoRA at initialisation")
    controls: list[dict[str, Any]] = [{"name": name, "forgetting": loss - base_loss, "expected": 0.0,
                                       "passed": abs(loss - base_loss) < CONTROL_TOLERANCE}
                                      for name, loss in (("base_backbone_reinserted", replica), ("lora_at_init", at_init))]
    for c in controls:
        if not c["passed"]:
            raise _fail(c["name"], f"it scores {c['forgetting']:+.3g} nats per token away from the base, where it "
                        "must score the same")

    # Control: the chunked loss is the loss of the model's own full logits (both scored above).
    chunked: dict[str, Any] = {"name": "chunked_loss_is_full_logits_loss", "forgetting": base_probe - full_probe,
                               "expected": 0.0, "passed": _loss_agrees(base_probe, full_probe)}
    controls.append(chunked)
    if not chunked["passed"]:
        raise _fail(chunked["name"], f"the loss computed in chunks is {base_probe:.9g} nats per token and the model's "
                    f"own full logits give {full_probe:.9g}")

    # Control: embeddings moved by a known amount. The head must stay the base's (checked by load), and
    # the loss must be the moved backbone's under the base head held apart, which a head re-tied to the
    # moved embeddings visibly misses.
    moved_state = moved_embedding_state(scratch, base_state)
    load(moved_state, "a backbone with moved input embeddings")
    moved = loss_of(scratch, probe)
    moved_expected = loss_of(scratch, probe, lambda lm, ids, mask: full_logits_nll_sum(lm, ids, mask, base_head))
    moved_embeddings = moved_state[_embedding_name(scratch)]
    retied = loss_of(scratch, probe, lambda lm, ids, mask: full_logits_nll_sum(lm, ids, mask, moved_embeddings))
    head_check.update(forgetting=moved - base_probe, expected=moved_expected - base_probe,
                      retied_difference=retied - moved_expected,
                      passed=_loss_agrees(moved, moved_expected)
                      and abs(retied - moved_expected) >= _min_effect(moved_expected))
    controls.append(head_check)
    if not head_check["passed"]:
        raise _fail("lm_head_kept", f"with the input embeddings moved, the lens scores {moved:.9g} nats per token "
                    f"where the base head gives {moved_expected:.9g} and a head re-tied to the embeddings "
                    f"{retied:.9g} (the two must differ by at least {_min_effect(moved_expected):.3g})")

    # Control: a LoRA run with a known update goes through _backbone_state like every run.
    with tempfile.TemporaryDirectory(prefix="lorascope-forgetting-") as folder:
        expected_state = write_known_lora_run(Path(folder), source, base_state)
        load(_backbone_state(RunFolder(Path(folder))), "a LoRA run with a known update")
    known_diff, known_where = weight_mismatch(scratch.get_decoder().state_dict(), expected_state)
    known = loss_of(scratch, probe)
    load(_as_float32(expected_state), "the known update applied directly")
    known_expected = loss_of(scratch, probe)
    controls.append({"name": "lora_known_update", "forgetting": known - base_probe,
                     "expected": known_expected - base_probe, "max_weight_difference": known_diff,
                     "passed": known_diff <= WEIGHT_RTOL and _loss_agrees(known, known_expected)})
    if not controls[-1]["passed"]:
        raise _fail("lora_known_update", f"a LoRA adapter with a known update (α/r = {KNOWN_LORA_ALPHA / KNOWN_LORA_R:g}) "
                    f"merges to weights that differ from W0 + (α/r)·B·A by {known_diff:.3g} × the matrix's largest "
                    f"entry (in {known_where}) and scores {known:.9g} nats per token where W0 + (α/r)·B·A "
                    f"scores {known_expected:.9g}")

    runs, own = [], {}
    methods = {record.label: str(record.method) for _, record in records}
    # A few seconds to minutes a run (the whole held-out text, then the probe twice): a bar on a terminal.
    console = Console(stderr=True)
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(), transient=True, console=console,
                  disable=not console.is_terminal) as bar:
        step = bar.add_task("forgetting: scoring each run", total=len(records))
        for run, record in records:
            load(_backbone_state(run), f"run {run.name}")
            files = run_files_backbone(run, base_state, prefix)
            diff, where = weight_mismatch(scratch.get_decoder().state_dict(), files)
            if diff > WEIGHT_RTOL:
                raise _fail("backbone_is_the_runs_own", f"the backbone scored as run {run.name} differs from the one "
                            f"its own files hold by {diff:.3g} × the matrix's largest entry (in {where})")
            loss = loss_of(scratch, texts)
            scored_probe = loss_of(scratch, probe)
            load(_as_float32(files), f"run {run.name} rebuilt from its files")
            files_probe = loss_of(scratch, probe)
            own[run.name] = {"forgetting": scored_probe - base_probe, "expected": files_probe - base_probe,
                             "max_weight_difference": diff}
            if not _loss_agrees(scored_probe, files_probe):
                raise _fail("backbone_is_the_runs_own", f"run {run.name} scores {scored_probe:.9g} nats per token where "
                            f"its backbone rebuilt from its own files scores {files_probe:.9g}")
            runs.append({"run": run.name, "method": record.label, "seed": record.seed,
                         "summary": {"loss": loss, "perplexity": math.exp(loss), "forgetting": loss - base_loss}})
            bar.advance(step)
    worst = max(own, key=lambda name: abs(own[name]["forgetting"] - own[name]["expected"]))
    controls.append({"name": "backbone_is_the_runs_own", "run": worst, **own[worst], "runs": len(own),
                     "max_weight_difference": max(v["max_weight_difference"] for v in own.values()),
                     "per_run": own, "passed": True})
    result = ForgettingRecord.create(
        config=cfg.model_dump(mode="json"), text_source=text_source, n_texts=len(texts), base_loss=base_loss,
        base_perplexity=math.exp(base_loss), controls=controls, runs=runs,
        comparison=compare_variants(runs, MEASURES, methods, pair=cfg.pair))
    unit.write({result.FILE: result.model_dump()})
    return result
