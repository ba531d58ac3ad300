"""``study plan``: what a study will run and what it will cost, before it runs.

For every unit (sanity checks, HPO trials, training runs, each analysis) the plan gives:

- **parameters**: total and trainable (LoRA vs full), counted on the model built from its config
  on the meta device (nothing is allocated or downloaded);
- **peak memory** of training: fp32 weights, fp32 gradients and AdamW's two fp32 states per
  trainable parameter, and the activations autograd keeps at ``batch_size × max_length``, counted
  by running the meta model's forward pass under ``saved_tensors_hooks`` (with gradient
  checkpointing: each layer's input, plus one layer recomputed; with bf16: 2-byte activations and a
  bf16 copy of every trainable weight);
- **time**, from a short calibration on this machine for each distinct model, method and
  max_length: after a warm-up run, ten training steps, each timed, give the seconds per processed
  token (their median), and a real run of two steps the fixed cost of a run (load, set-up,
  evaluation, save);
  a unit's time is that cost plus its tokens, counted from its task's real token lengths as its
  batches pad them (an evaluation token at a third of a training token's cost).
  A configuration that does not fit here, or whose calibration would take too long, is timed from
  its FLOPs (6·N per token for full fine-tuning, 4·N for LoRA) at this device's measured matmul
  rate instead, and says so.

It also says which units are done in the study folder already, and whether the verdicts can
decide with the seeds given: the exact sign-flip test cannot give a one-sided p below 2^-n with n
seed pairs, and a verdict is ``underpowered`` when that floor is above alpha / m, m the study's
family of hypotheses × tasks (:mod:`lorascope.stats.family`, :func:`lorascope.stats.verdict.status_of`).

Estimates assume every epoch runs (early stopping can only shorten a run) and are upper bounds for
memory (a batch of the longest examples; the length-grouped sampler puts it first).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lorascope.artifacts import made_from
from lorascope.errors import ConfigError
from lorascope.run_folder import RunFolder
from lorascope.study.config import StudyConfig
from lorascope.study.layout import StudyLayout
from lorascope.train.config import TrainConfig

# The process around a training run on the CPU (the Trainer, data, tokenizer, kernel workspaces and
# the allocator's slack), measured on MiniLM and tiny-llama runs: about 100 MB.
CPU_RUNTIME_BYTES = 100 * 2**20
# A CUDA context and cuBLAS workspace, outside torch's allocator statistics.
CUDA_RUNTIME_BYTES = 600 * 2**20
# Steps timed one by one for the seconds per token (their median: one step slowed by another process
# does not move it), and steps of the short real run that gives the fixed cost of a run.
CALIBRATION_STEPS = 10
SHORT_RUN_STEPS = 2
# A calibration predicted (from FLOPs) to take longer than this is not run: the FLOP estimate stands.
CALIBRATION_BUDGET_S = 120.0
# Samples whose token lengths stand for a larger split.
LENGTH_SAMPLE = 4000
# Fraction of the measured matmul rate a whole training step reaches (attention, norms, the optimizer).
FLOP_EFFICIENCY = 0.5
CALIBRATION_VERSION = 6


@dataclass
class Memory:
    """Estimated peak memory of one training unit, in bytes, by part."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    other: int  # bf16 weight copies, optimizer-step temporaries, the runtime around the model

    @property
    def peak(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.other

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "peak": self.peak}


@dataclass
class Shape:
    """A model as one method trains it: what the meta build counted."""

    total: int | None
    trainable: int | None
    activations_per_sample: int | None = None  # bytes kept for backward by one sample at max_length
    embedding_params: int = 0  # looked up, not multiplied: no FLOPs per token
    layers: int = 0
    hidden: int = 0
    note: str = ""

    @property
    def matmul_params(self) -> int:
        return max((self.total or 0) - self.embedding_params, 0)


@dataclass
class UnitPlan:
    """One unit of work and its estimate."""

    stage: str
    name: str
    seconds: float | None
    done: bool = False
    task: str | None = None
    method: str | None = None
    seed: int | None = None
    total_params: int | None = None
    trainable_params: int | None = None
    memory: dict[str, int] | None = None
    basis: str = ""  # how the time was estimated

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Decidability:
    """Whether a study's verdicts can reach significance with its seeds."""

    seeds: int
    family_size: int
    alpha: float
    corrected_alpha: float
    exact_min_p: float
    exact_can_decide: bool
    exact_seeds_needed: int
    t_can_decide: bool
    t_seeds_for_power: dict[str, int | None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StudyPlan:
    """Every unit of a study with its estimate, and what the statistics can decide."""

    name: str
    out: str
    device: str
    training_device: str
    units: list[UnitPlan]
    decidability: Decidability
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float | None:
        known = [u.seconds for u in self.units if u.seconds is not None]
        return sum(known) if known else None

    @property
    def remaining_seconds(self) -> float | None:
        left = [u for u in self.units if not u.done]
        if any(u.seconds is None for u in left):
            return None
        return sum(u.seconds or 0.0 for u in left)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "out": self.out, "device": self.device, "training_device": self.training_device,
                "units": [u.to_dict() for u in self.units], "total_seconds": self.total_seconds,
                "remaining_seconds": self.remaining_seconds, "decidability": self.decidability.to_dict(),
                "notes": self.notes}


# --- statistics ----------------------------------------------------------------------------------

def decidability(cfg: StudyConfig) -> Decidability:
    """The floor of the exact test against the Holm-corrected alpha of the study's family.

    Holm's first step compares the smallest p with alpha / m; a test whose floor is above it gives
    every verdict of the family the status ``underpowered``, whatever the data. The paired t-test
    has no floor with 2 or more pairs; what it needs is power, shown as the seed pairs for 80%
    power at alpha / m for standardised effects d_z of 0.8, 1.5 and 3.
    """
    from lorascope.stats.permutation import min_attainable_p
    from lorascope.stats.power import exact_floor_pairs, pairs_for_power

    n = len(cfg.seeds)
    m = len(cfg.tasks) * len(cfg.drift.family.hypotheses)
    alpha = cfg.drift.alpha
    corrected = alpha / m
    floor = min_attainable_p(n, "greater")
    return Decidability(
        seeds=n, family_size=m, alpha=alpha, corrected_alpha=corrected, exact_min_p=floor,
        exact_can_decide=floor <= corrected, exact_seeds_needed=exact_floor_pairs(corrected),
        t_can_decide=n >= 2, t_seeds_for_power={f"{d:g}": pairs_for_power(d, corrected) for d in (0.8, 1.5, 3.0)})


# --- the model's shape, counted on the meta device ------------------------------------------------

def model_config(name: str, num_labels: int) -> tuple[Any | None, str | None, str]:
    """(transformers config, folder of a tokenizer for token lengths, note) of a model, without weights.

    An alias or folder reads its own config; a Hub id its cached one. ``tinyllama`` (the Hub model)
    not in the cache is described by TinyLlama-1.1B's shapes (:mod:`lorascope.models.shapes`), its
    token lengths by MiniLM's tokenizer, as the random-weights alias ``tinyllama-shape`` is.
    """
    from transformers import AutoConfig

    from lorascope.models.packages import minilm_dir
    from lorascope.models.registry import ALIASES, resolve_model
    from lorascope.models.shapes import tinyllama_shape_config

    alias = ALIASES.get(name)
    try:
        source = resolve_model(name)
    except ConfigError as err:
        if name == "tinyllama" or (alias is not None and alias.random_weights):
            return (tinyllama_shape_config(num_labels, 0), str(minilm_dir()),
                    "TinyLlama-1.1B's shapes (config not in the local cache; token lengths from MiniLM's tokenizer)")
        return None, None, f"unknown (config not available offline: {err})"
    try:
        config = AutoConfig.from_pretrained(source, num_labels=num_labels)
    except (OSError, ValueError) as err:
        return None, None, f"unknown (config not available offline: {str(err).splitlines()[0]})"
    return config, source, ""


def meta_shape(config: Any, train: TrainConfig, bf16: bool, checkpointing: bool) -> Shape:
    """Parameters and the activations one sample of ``train.max_length`` tokens keeps for backward.

    The model is built and run on the meta device: shapes only, nothing allocated. Saved tensors
    are counted once per storage (views of one tensor share it); parameters saved by an op are not
    activations.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from lorascope.models.adapt import prepare_for_method

    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = 0  # a decoder's head reads the last non-pad token; any id does on meta
    dtype = torch.bfloat16 if bf16 else torch.float32
    with torch.device("meta"):
        # transformers leaves from_config unannotated
        net = AutoModelForSequenceClassification.from_config(config, dtype=dtype)  # type: ignore[no-untyped-call]
        net, counts = prepare_for_method(net, train.method, r=train.lora_r, alpha=train.lora_alpha,
                                         dropout=train.lora_dropout, targets=train.lora_targets,
                                         rslora=train.lora_rslora, dora=train.lora_dora)
    net.train()
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = int(getattr(text, "num_hidden_layers", 0) or getattr(text, "n_layers", 0) or 1)
    hidden = int(getattr(text, "hidden_size", 0) or getattr(text, "dim", 0) or 0)
    params = {id(p) for p in net.parameters()}
    saved: dict[int, int] = {}
    keep: list[Any] = []  # held so that no id is reused while counting

    def pack(t: Any) -> Any:
        root = t._base if t._base is not None else t
        if id(t) not in params and id(root) not in params:
            saved[id(root)] = root.numel() * root.element_size()
            keep.append(root)
        return t

    ids = torch.zeros(1, train.max_length, dtype=torch.long, device="meta")
    labels = torch.zeros(1, dtype=torch.long, device="meta")
    try:
        # No attention mask: on meta, the mask's "is it all ones?" check has no data to read.
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(input_ids=ids, labels=labels)
        per_sample: int | None = sum(saved.values())
    except (RuntimeError, NotImplementedError, TypeError):  # an architecture whose forward needs real data
        per_sample = None
    if per_sample is not None and checkpointing:
        # Checkpointing keeps each layer's input and recomputes one layer at a time in backward.
        per_sample = layers * train.max_length * hidden * (2 if bf16 else 4) + per_sample // layers
    embedding = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Embedding))
    return Shape(counts.total, counts.trainable, per_sample, embedding, layers, hidden)


def training_memory(shape: Shape, train: TrainConfig, *, bf16: bool, cuda: bool) -> Memory | None:
    """Peak memory of one training step (see the module docstring for the parts)."""
    if shape.total is None or shape.trainable is None or shape.activations_per_sample is None:
        return None
    trainable = shape.trainable
    # One layer's working set (its own forward temporaries, then its gradients) on top of what is saved.
    working = 1 + 2 / max(shape.layers, 1)
    activations = int(shape.activations_per_sample * train.batch_size * working)
    other = CUDA_RUNTIME_BYTES if cuda else CPU_RUNTIME_BYTES
    if bf16:
        other += 2 * trainable  # autocast's cached bf16 copy of every weight that requires grad
    if cuda:
        other += 4 * trainable  # the foreach AdamW step's temporaries
    return Memory(weights=4 * shape.total, gradients=4 * trainable, optimizer=8 * trainable,
                  activations=activations, other=other)


# --- token counts --------------------------------------------------------------------------------

def padded_tokens(lengths: list[int], batch_size: int, *, grouped: bool, pad_to: int | None, seed: int = 0) -> int:
    """Tokens an epoch over ``lengths`` processes once its batches are padded.

    Args:
        grouped: length-grouped batches (mega-batches of 50 batches sorted by length, as the
            Trainer's sampler draws them); else random batches.
        pad_to: every batch padded to this length (``pad_to_max_length``).
    """
    import numpy as np

    if not lengths:
        return 0
    if pad_to is not None:
        return len(lengths) * pad_to
    order = np.random.default_rng(seed).permutation(len(lengths))
    arr = np.asarray(lengths)[order]
    if grouped:
        mega = 50 * batch_size
        arr = np.concatenate([np.sort(arr[i:i + mega])[::-1] for i in range(0, len(arr), mega)])
    return int(sum(arr[i:i + batch_size].max() * len(arr[i:i + batch_size]) for i in range(0, len(arr), batch_size)))


@dataclass
class TaskTokens:
    """Token lengths of one task's training and dev examples under one tokenizer and max_length."""

    train: list[int]
    dev: list[int]
    train_total: int  # examples the lengths stand for
    dev_total: int


def task_tokens(train: TrainConfig, tokenizer_source: str, is_decoder: bool) -> TaskTokens:
    """The token lengths of a unit's training subset and dev subset (a sample of a large split)."""
    from transformers import AutoTokenizer

    from lorascope.data import get_task, load_split, subsample, with_label_set
    from lorascope.data.tokenize import tokenize_dataset

    spec = with_label_set(get_task(train.task), train.data_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    if is_decoder:
        # A stand-in WordPiece tokenizer (MiniLM's, for TinyLlama's shapes) has no EOS: [SEP] plays it,
        # as for the tiny-llama alias.
        tokenizer.eos_token = tokenizer.eos_token or tokenizer.sep_token
        tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
    out = []
    for split, limit in (("train", train.train_limit), ("validation", train.eval_limit)):
        rows = subsample(load_split(spec, split, train.data_dir), limit, train.data_seed)
        sample = subsample(rows, LENGTH_SAMPLE, 0)
        ds = tokenize_dataset(sample, tokenizer, is_pair=spec.is_pair, is_decoder=is_decoder,
                              max_length=train.max_length, source=f"task {spec.name}, split {split}")
        out.append(([len(x) for x in ds["input_ids"]], len(rows)))
    (tr, n_tr), (dv, n_dv) = out
    return TaskTokens(tr, dv, n_tr, n_dv)


def unit_tokens(train: TrainConfig, tokens: TaskTokens) -> tuple[float, float]:
    """(training tokens, evaluation tokens) one run processes, counting padding.

    Every epoch runs (no early stop); the checkpoint-choosing split (dev, or the held-out share of
    the training examples) is evaluated ``evals_per_epoch`` times an epoch, and dev once more at
    the end for the per-example predictions.
    """
    pad = train.max_length if train.pad_to_max_length else None
    grouped = train.group_by_length and not train.pad_to_max_length
    held = math.ceil(tokens.train_total * train.selection_split) if train.selection_split else 0
    scale_train = (tokens.train_total - held) / max(len(tokens.train), 1)
    epoch = padded_tokens(tokens.train, train.batch_size * train.grad_accum, grouped=grouped, pad_to=pad) * scale_train
    dev = padded_tokens(tokens.dev, train.eval_batch_size, grouped=grouped, pad_to=pad) * tokens.dev_total / max(len(tokens.dev), 1)
    choose = (padded_tokens(tokens.train, train.eval_batch_size, grouped=grouped, pad_to=pad) * held
              / max(len(tokens.train), 1)) if held else dev
    evals = math.ceil(train.epochs * train.evals_per_epoch)
    return epoch * train.epochs, evals * choose + dev


# --- calibration ---------------------------------------------------------------------------------

def _cache_path() -> Path:
    from lorascope.models.cache import cache_root

    return cache_root() / "plan-calibration.json"


def _read_cache() -> dict[str, Any]:
    path = _cache_path()
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if data.get("version") == CALIBRATION_VERSION else {}


def _write_cache(data: dict[str, Any]) -> None:
    from lorascope.artifacts import write_json

    write_json(_cache_path(), {**data, "version": CALIBRATION_VERSION})


def forget_calibration() -> None:
    """Drop the cached timings of this machine as it is now (device, cores and threads); others stay."""
    here = f"|{device_name()}"
    cache = _read_cache()
    kept = {k: v for k, v in cache.items() if k == "version" or here not in k}
    if len(kept) != len(cache):
        _write_cache(kept)


def device_name() -> str:
    """What the calibration ran on: the GPU's name, or the CPU's core count."""
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    return f"cpu:{os.cpu_count()} cores, {torch.get_num_threads()} threads"


def matmul_rate() -> float:
    """Floating-point operations per second of a square matmul on the training device (cached)."""
    import torch

    cache = _read_cache()
    key = f"matmul|{device_name()}"
    if key in cache:
        return float(cache[key])
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    n = 2048 if cuda else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps, elapsed = 0, 0.0
    start = time.perf_counter()
    while elapsed < 0.5:
        a @ b
        if cuda:
            torch.cuda.synchronize()
        reps += 1
        elapsed = time.perf_counter() - start
    rate = 2 * n**3 * reps / elapsed
    _write_cache({**cache, key: rate})
    return rate


def calibration_key(train: TrainConfig) -> str:
    """What one calibration stands for: the model, the method's shape and the precision (the seconds per
    token); the task, batch sizes and lengths act through each unit's token count instead."""
    cost = {k: v for k, v in train.model_dump().items()
            if k in ("model", "method", "max_length", "lora_r", "lora_targets", "lora_dora", "bf16",
                     "gradient_checkpointing", "save_model")}
    return json.dumps(cost, sort_keys=True, default=str)


def calibrate(train: TrainConfig) -> dict[str, float]:
    """Seconds per processed training token, and the fixed seconds of a run, measured here.

    After a first short run that only warms the process up, the Trainer trains ``CALIBRATION_STEPS``
    steps of ``train`` on its task's data, each step timed (dataloading, forward, backward,
    optimizer): the rate is the median step's seconds times the steps over the tokens (padding
    included) they processed. Then a
    real run of ``SHORT_RUN_STEPS`` steps that evaluates one batch: what its steps do not explain
    at that rate is the fixed cost (loading, set-up, evaluation, saving), from the quicker of it and
    the warm-up run (the same run). Cached by device and settings.
    """
    import statistics

    from transformers import TrainerCallback

    from lorascope.train import run_train
    from lorascope.train.run import prepare_run
    from lorascope.train.trainer import build_trainer

    cache = _read_cache()
    key = f"run|{device_name()}|{calibration_key(train)}"
    if key in cache:
        return dict(cache[key])

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []
            self.tokens = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.marks.append(time.perf_counter())

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # The Trainer counts processed tokens only when it logs: read once, at the end.
            self.tokens = int(state.num_input_tokens_seen)

    def short(steps: int) -> TrainConfig:
        return train.model_copy(update=dict(
            train_limit=steps * train.batch_size * train.grad_accum, eval_limit=train.eval_batch_size, epochs=1.0,
            evals_per_epoch=1, patience=0, selection_split=None, report_to="none", seed=0))

    with tempfile.TemporaryDirectory(prefix="lorascope-plan-") as tmp:
        # Pays what only a process's first run pays (imports, kernel and file-system set-up), which a
        # study's later units do not.
        started = time.perf_counter()
        run_train(short(SHORT_RUN_STEPS), Path(tmp) / "warm-up", progress=False)
        first = time.perf_counter() - started
        loop = short(CALIBRATION_STEPS)
        run = prepare_run(loop)
        clock = StepClock()
        trainer, _ = build_trainer(run.loaded.model, run.loaded.tokenizer, run.train_ds, run.choosing_ds, loop, run.spec,
                                   Path(tmp) / "loop", evaluate=False, extra_callbacks=[clock], progress=False)
        clock.marks.append(time.perf_counter())
        trainer.train()
        del trainer, run
        steps = [t1 - t0 for t0, t1 in zip(clock.marks, clock.marks[1:])]
        # The median step (another process's burst slows a few) times the steps, over the tokens they processed.
        rate = statistics.median(steps) * len(steps) / clock.tokens if steps and clock.tokens else 0.0
        started = time.perf_counter()
        record = run_train(short(SHORT_RUN_STEPS), Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - started
    if record is None or not record.ok:
        raise ConfigError(f"plan: the calibration run of {train.model} ({train.method}) failed: "
                          f"{record.reason if record else 'no record'}")
    tokens = float((record.model_extra or {}).get("tokens_processed") or 0)
    # The quicker of the two short runs: another process's burst can only slow one down.
    result = {"seconds_per_token": rate, "fixed_seconds": max(min(first, seconds) - rate * tokens, 0.0)}
    _write_cache({**_read_cache(), key: result})
    return result


def load_seconds(model_bytes: int) -> float:
    """Seconds to load a model of ``model_bytes`` from disk and put it on its device (about 1 GB/s, 2 s at least)."""
    return 2.0 + model_bytes / 1e9


# --- the plan ------------------------------------------------------------------------------------

@dataclass
class _Costed:
    """What the plan knows about one distinct training configuration."""

    shape: Shape
    memory: Memory | None
    tokens: TaskTokens | None
    rate: float | None  # seconds per training token
    fixed: float | None
    basis: str


def plan_study(cfg: StudyConfig, *, calibrate_here: bool = True, progress: Any = None) -> StudyPlan:
    """The plan of a study (see the module docstring).

    Args:
        calibrate_here: run the calibration (else every time comes from FLOPs).
        progress: called with a line of text as each calibration starts.
    """
    import torch

    from lorascope.data import get_task
    from lorascope.models.device import resolve_device
    from lorascope.study.stages import tuned_settings
    from lorascope.study.units import train_units
    from lorascope.train.trainer import hardware_flags

    out = Path(cfg.out)
    layout = StudyLayout(out)
    from lorascope.models.device import _mps_available

    cuda = torch.cuda.is_available()
    training_device = "cuda" if cuda else "mps" if _mps_available() else "cpu"  # where the Trainer puts a run
    try:
        analysis_device = str(resolve_device(cfg.device))
    except ConfigError as err:
        analysis_device = f"{cfg.device} (not here: {err})"
    notes: list[str] = []
    rate_flops = matmul_rate() * FLOP_EFFICIENCY
    shapes: dict[str, tuple[Shape, Memory | None, bool]] = {}
    token_cache: dict[str, TaskTokens | None] = {}
    rates: dict[str, tuple[float | None, float | None, str]] = {}

    def shape_of(train: TrainConfig) -> tuple[Shape, Memory | None, Any]:
        spec = get_task(train.task)
        key = json.dumps([calibration_key(train), train.batch_size, train.grad_accum, len(spec.label_names)])
        config, tok_source, note = model_config(train.model, len(spec.label_names))
        if key not in shapes:
            if config is None:
                shapes[key] = (Shape(None, None, note=note), None, False)
            else:
                bf16, ckpt = hardware_flags(train)
                shape = meta_shape(config, train, bf16, ckpt)
                shape.note = note
                if note and f"model {train.model}: {note}" not in notes:
                    notes.append(f"model {train.model}: {note}")
                shapes[key] = (shape, training_memory(shape, train, bf16=bf16, cuda=cuda),
                               config.model_type not in _encoder_types())
        shape, memory, is_decoder = shapes[key]
        return shape, memory, (tok_source, is_decoder)

    def tokens_of(train: TrainConfig, tok: tuple[str | None, bool]) -> TaskTokens | None:
        key = json.dumps([train.task, train.model, train.max_length, train.train_limit, train.eval_limit, train.data_seed])
        if key not in token_cache:
            token_cache[key] = task_tokens(train, tok[0], tok[1]) if tok[0] else None
        return token_cache[key]

    def rate_of(train: TrainConfig, shape: Shape, memory: Memory | None,
                tokens: TaskTokens | None) -> tuple[float | None, float | None, str]:
        key = calibration_key(train)
        if key in rates:
            return rates[key]
        if shape.total is None:
            rates[key] = (None, None, shape.note)
            return rates[key]
        factor = 6 if train.method == "full" else 4
        rate = factor * shape.matmul_params / rate_flops
        fixed = load_seconds(4 * shape.total) + 3.0
        basis = f"FLOPs ({factor}·N per token, N = {human_count(shape.matmul_params)} outside embeddings, at " \
                f"{rate_flops / 1e9:.0f} GFLOP/s)"
        if calibrate_here and tokens is not None:
            available = _available_bytes(cuda)
            steps_tokens = (CALIBRATION_STEPS + SHORT_RUN_STEPS) * train.batch_size * train.grad_accum * (
                sum(tokens.train) / max(len(tokens.train), 1))
            predicted = 3 * fixed + rate * (steps_tokens + SHORT_RUN_STEPS * steps_tokens / CALIBRATION_STEPS)
            if memory is not None and available is not None and memory.peak > available:
                basis += f"; not calibrated: {memory.peak / 2**30:.1f} GiB does not fit in {available / 2**30:.1f} GiB free here"
            elif predicted > CALIBRATION_BUDGET_S:
                basis += f"; not calibrated: its calibration would take about {predicted / 60:.0f} min here"
            elif not _has_weights(train.model):
                basis += "; not calibrated: the weights are not available offline"
            else:
                if progress and f"run|{device_name()}|{calibration_key(train)}" not in _read_cache():
                    progress(f"calibrating {train.label} on {train.model} (max_length {train.max_length}, "
                             f"batch {train.batch_size}, task {train.task})")
                measured = calibrate(train)
                rate, fixed = measured["seconds_per_token"], measured["fixed_seconds"]
                basis = f"calibrated on this {training_device}"
        rates[key] = (rate, fixed, basis)
        return rates[key]

    def cost_of(train: TrainConfig) -> _Costed:
        shape, memory, tok = shape_of(train)
        tokens = tokens_of(train, tok) if shape.total is not None else None
        rate, fixed, basis = rate_of(train, shape, memory, tokens)
        return _Costed(shape, memory, tokens, rate, fixed, basis)

    def run_seconds(train: TrainConfig, c: _Costed) -> float | None:
        if c.tokens is None or c.rate is None or c.fixed is None:
            return None
        train_tokens, eval_tokens = unit_tokens(train, c.tokens)
        # The fixed cost already holds the calibration run's two passes over one evaluation batch.
        mean_dev = sum(c.tokens.dev) / max(len(c.tokens.dev), 1)
        eval_tokens = max(eval_tokens - 2 * min(train.eval_batch_size, c.tokens.dev_total) * mean_dev, 0.0)
        return c.fixed + c.rate * (train_tokens + eval_tokens / 3)  # a forward pass is a third of a step

    # (stage, name, training settings or None, done, plan of a unit without training settings, labels)
    specs: list[tuple[str, str, TrainConfig | None, bool, UnitPlan | None, dict[str, Any]]] = []
    first_seed = cfg.seeds[0]
    if "sanity" in cfg.stages:
        s = cfg.sanity
        for task in cfg.tasks:
            for method in cfg.methods:
                base = cfg.train_config(task, method, first_seed)
                sanity = base.model_copy(update=dict(train_limit=s.samples, eval_limit=s.samples, epochs=float(s.max_epochs),
                                                     batch_size=2, selection_split=None, evals_per_epoch=1))
                specs.append(("sanity", f"sanity {task}-{method}", sanity, layout.sanity.is_file(), None,
                              dict(task=task, method=method)))
    if "baselines" in cfg.stages:
        specs.append(("baselines", "baselines", None, False,
                      UnitPlan("baselines", "baselines", 1.0, layout.baselines.is_file(), basis="reads labels only"), {}))
    hpo_space: dict[str, dict[str, Any]] = {}
    if "hpo" in cfg.stages:
        from lorascope.study.config import hpo_config

        for task in cfg.tasks:
            for method in cfg.methods:
                h = hpo_config(cfg, task, method)
                worst = _worst_trial(h)
                hpo_space[f"{task}/{method}"] = worst
                trial = cfg.train_config(task, method, cfg.hpo.seed, {**h.train, **worst})
                done = (layout.hpo(task, method) / "hpo.json").is_file()
                for i in range(h.n_trials):
                    specs.append(("hpo", f"hpo {task}-{method} trial {i + 1}/{h.n_trials}", trial, done, None,
                                  dict(task=task, method=method)))
        notes.append("hpo: each trial, and each training run before its search has chosen, is estimated at the "
                     "search space's most expensive choices (largest batch_size, most epochs)")
    if "train" in cfg.stages:
        for u in train_units(cfg, out=out):
            tuned = tuned_settings(out, u.task, u.method) or hpo_space.get(f"{u.task}/{u.method}", {})
            specs.append(("train", u.name, cfg.train_config(u.task, u.method, u.seed, tuned), _finished(u.folder(out)),
                          None, dict(task=u.task, method=u.method, seed=u.seed)))
        if cfg.sweep_seeds:
            notes.append("sweep_seeds: the chosen points' other seeds are added once the sweep's runs finish; "
                         "they are not listed yet")
    # Training units first: each configuration is calibrated on the settings of the runs that matter most.
    order = {"train": 0, "hpo": 1, "sanity": 2}
    costs = {i: cost_of(sp[2]) for i, sp in sorted(enumerate(specs), key=lambda e: order.get(e[1][0], 3))
             if sp[2] is not None}
    units: list[UnitPlan] = []
    for i, (stage, name, train, done, fixed_plan, labels) in enumerate(specs):
        if fixed_plan is not None or train is None:
            units.append(fixed_plan or UnitPlan(stage, name, None, done))
            continue
        c = costs[i]
        units.append(UnitPlan(stage=stage, name=name, seconds=run_seconds(train, c), done=done, total_params=c.shape.total,
                              trainable_params=c.shape.trainable, memory=c.memory.to_dict() if c.memory else None,
                              basis=c.basis, **labels))
    reference = next((costs[i] for i, sp in enumerate(specs) if sp[0] == "train"), next(iter(costs.values()), None))
    dev_lengths: dict[str, float] = {}
    for i, sp in enumerate(specs):
        known = costs.get(i)
        if known is not None and known.tokens is not None and known.tokens.dev and sp[5].get("task") not in dev_lengths:
            dev_lengths[sp[5]["task"]] = sum(known.tokens.dev) / len(known.tokens.dev)
    units += _analysis_units(cfg, layout, units, reference, dev_lengths, rate_flops)
    if "report" in cfg.stages:
        units.append(UnitPlan("report", "report", 5.0, (layout.report / "report.html").is_file(),
                              basis="reads artifacts"))
    notes.append(f"training runs on {training_device} (the Trainer's placement); the analyses on {analysis_device} "
                 "(the study's device)")
    return StudyPlan(cfg.name, str(out), analysis_device, training_device, units, decidability(cfg), notes)


def _encoder_types() -> frozenset[str]:
    from lorascope.models.load import ENCODER_MODEL_TYPES

    return ENCODER_MODEL_TYPES


def _finished(folder: Path) -> bool:
    from lorascope.run_folder import RunFolder

    if not RunFolder.holds_run(folder):
        return False
    try:
        return RunFolder(folder).record().ok
    except ConfigError:
        return False


def _has_weights(model: str) -> bool:
    """Whether the model's weights are here (an alias built or shipped locally, a folder, a cached Hub id)."""
    from lorascope.models.registry import resolve_model

    try:
        resolve_model(model)
    except ConfigError:
        return False
    return True


def _available_bytes(cuda: bool) -> int | None:
    if cuda:
        import torch

        from lorascope.models.device import free_memory

        return free_memory(torch.device("cuda"))
    import psutil

    return int(psutil.virtual_memory().available)


def _worst_trial(h: Any) -> dict[str, Any]:
    """The most expensive values of an HPO space's cost settings (batch_size, epochs)."""
    from lorascope.hpo.space import Choice, Fixed, resolve_space

    space = resolve_space(h.method, h.space)
    worst: dict[str, Any] = {}
    for name in ("batch_size", "epochs"):
        param = space.params.get(name)
        if isinstance(param, Choice):
            worst[name] = max(param.choices)
        elif isinstance(param, Fixed):
            worst[name] = param.value
    return worst


def _analysis_units(cfg: StudyConfig, layout: StudyLayout, units: list[UnitPlan], first: _Costed | None,
                    dev_lengths: dict[str, float], rate_flops: float) -> list[UnitPlan]:
    """One unit per task and analysis stage, and the bench: forward passes at a third of a training
    token's calibrated cost, model loads, and the statistics' own cost."""
    out: list[UnitPlan] = []
    by_task = {task: [u for u in units if u.stage == "train" and u.task == task] for task in cfg.tasks}
    runs_of = {task: len(v) for task, v in by_task.items()}
    total = first.shape.total if first else None
    fwd = (first.rate / 3) if first and first.rate is not None else (2 * (total or 0) / rate_flops if total else None)
    load = load_seconds(4 * total) if total else None
    basis = first.basis.split(";")[0] if first else "unknown"
    decoder = first is not None and first.shape.total is not None and _is_decoder_model(cfg.model)

    def add(stage: str, name: str, seconds: float | None, done: bool, how: str) -> None:
        out.append(UnitPlan(stage, name, seconds, done, basis=f"{how}; {basis}" if seconds is not None else "unknown"))

    fingerprint = RunFolder.fingerprint_under(layout.train) if layout.train.is_dir() else {}

    for task in cfg.tasks:
        n = runs_of[task]
        mean_len = dev_lengths.get(task)

        def done(record: Path, task: str = task) -> bool:
            """As the stage will find it: no run it reads is still to train, and it was computed from these runs."""
            return all(u.done for u in by_task[task]) and analysis_done(record, fingerprint)
        if "drift" in cfg.stages:
            d = cfg.drift
            seconds = None
            if fwd is not None and load is not None and mean_len:
                tokens = (n + 3) * min(d.n_samples, 10**9) * min(mean_len, d.max_length)
                seconds = tokens * fwd + (n + 3) * load + n * _bootstrap_seconds(cfg, first)
            add("drift", f"drift {task}", seconds, done(layout.drift(task) / "drift.json"),
                f"{n + 3} extractions of {d.n_samples} samples, {d.bootstrap} bootstrap resamples a run")
        if "weights" in cfg.stages:
            seconds = None if load is None else load + n * _svd_seconds(first)
            add("weights", f"weights {task}", seconds, done(layout.weights(task) / "weights.json"),
                "SVDs of the adapted matrices, float64 on the CPU")
        if "forgetting" in cfg.stages:
            f = cfg.forgetting
            if not decoder:
                out.append(UnitPlan("forgetting", f"forgetting {task}", 0.0, True,
                                    basis="skipped: the base is not a decoder with a language-model head"))
            else:
                seconds = None if fwd is None or load is None else (n + 4) * f.n_texts * f.max_length * fwd + (n + 3) * load
                add("forgetting", f"forgetting {task}", seconds,
                    done(layout.forgetting(task) / "forgetting.json"),
                    f"{n + 4} scorings of {f.n_texts} passages")
        if "probes" in cfg.stages:
            p = cfg.probes
            others = len(p.probe_tasks) or len(cfg.tasks) - 1
            seconds = None if fwd is None or load is None or not mean_len else \
                (n + 2) * others * (p.n_train + p.n_dev) * min(mean_len, p.max_length) * fwd + (n + 2) * load
            add("probes", f"probes {task}", seconds, done(layout.probes(task) / "probes.json"),
                f"{n + 2} models × {others} probe tasks")
    if "bench" in cfg.stages:
        from lorascope.bench.config import STRATEGIES

        b = cfg.bench
        mean_len = dev_lengths.get(cfg.tasks[0]) or 64
        passes = len(STRATEGIES) * sum((b.requests + b.warmup) * bs for bs in b.batch_sizes)
        seconds = None if fwd is None or load is None else passes * mean_len * fwd + len(STRATEGIES) * load
        add("bench", "bench", seconds, layout.bench_json.is_file(),
            f"{len(STRATEGIES)} strategies × batch sizes {b.batch_sizes} × {b.requests + b.warmup} requests")
    return out


def analysis_done(record: Path, fingerprint: dict[str, str]) -> bool:
    """Whether the analysis whose main record is ``record`` was computed from the runs ``fingerprint``
    describes (its ``inputs.json``, :meth:`lorascope.run_folder.RunFolder.fingerprint_under`)."""
    return record.is_file() and made_from(record.parent, fingerprint)


def _is_decoder_model(model: str) -> bool:
    config, _, _ = model_config(model, 2)
    return config is not None and config.model_type not in _encoder_types()


def _bootstrap_seconds(cfg: StudyConfig, first: _Costed | None) -> float:
    """Seconds of one run's bootstrap over samples (timed on random arrays of the run's shape, cached)."""
    import numpy as np

    from lorascope.drift.analysis import drift_of_run

    if first is None or not first.shape.hidden:
        return 0.0
    d = cfg.drift
    layers, n, dim = first.shape.layers + 1, d.n_samples, first.shape.hidden
    key = f"bootstrap|{device_name()}|{layers}|{n}|{dim}"
    cache = _read_cache()
    if key not in cache:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((layers, n, dim)).astype(np.float32)
        b = a + 0.1 * rng.standard_normal((layers, n, dim)).astype(np.float32)
        started = time.perf_counter()
        drift_of_run(a, b, method="x", seed=0, metric=None, n_resamples=10)
        cache[key] = (time.perf_counter() - started) / 10
        _write_cache(cache)
    return float(cache[key]) * d.bootstrap


def _svd_seconds(first: _Costed | None) -> float:
    """Seconds of the weight lens on one run: about 4 full and 3 values-only SVDs per adapted
    matrix (two per layer by default), timed on one random matrix of the model's width (cached)."""
    import numpy as np

    if first is None or not first.shape.hidden:
        return 0.0
    h = first.shape.hidden
    key = f"svd|{device_name()}|{h}"
    cache = _read_cache()
    if key not in cache:
        m = np.random.default_rng(0).standard_normal((h, h))
        started = time.perf_counter()
        np.linalg.svd(m, full_matrices=False)
        full = time.perf_counter() - started
        started = time.perf_counter()
        np.linalg.svd(m, compute_uv=False)
        cache[key] = 4 * full + 3 * (time.perf_counter() - started)
        _write_cache(cache)
    return float(cache[key]) * 2 * first.shape.layers


# --- text ----------------------------------------------------------------------------------------

def human_bytes(n: int | None) -> str:
    """``n`` bytes in GiB, MiB, KiB or B, or "unknown" for None."""
    if n is None:
        return "unknown"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def human_count(n: int | None) -> str:
    """``n`` with a B, M or k suffix (billions, millions, thousands), or "unknown" for None."""
    if n is None:
        return "unknown"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def human_seconds(s: float | None) -> str:
    """``s`` seconds in days, hours, minutes or seconds, or "unknown" for None."""
    if s is None:
        return "unknown"
    if s >= 86400:
        return f"{s / 86400:.1f} d"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s"


def decidability_lines(d: Decidability) -> list[str]:
    """What the statistics can decide, in words."""
    head = (f"family: {d.family_size} verdicts (hypotheses × tasks), Holm at alpha {d.alpha:g}: the first step "
            f"needs p ≤ {d.alpha:g}/{d.family_size} = {d.corrected_alpha:.4g}")
    exact = (f"exact sign-flip test, {d.seeds} seed pairs: smallest one-sided p 2^-{d.seeds} = {d.exact_min_p:.4g} "
             + ("≤" if d.exact_can_decide else ">") + f" {d.corrected_alpha:.4g}: "
             + ("can decide" if d.exact_can_decide else f"CANNOT decide (underpowered whatever the data); it needs "
                                                        f"≥ {d.exact_seeds_needed} seeds"))
    power = ", ".join(f"d_z {k}: {v if v is not None else '> 100000'}" for k, v in d.t_seeds_for_power.items())
    t = ("paired t-test: no floor with ≥ 2 seed pairs (p can reach any level); seed pairs for 80% power at "
         f"{d.corrected_alpha:.4g}: {power}" if d.t_can_decide else
         "paired t-test: needs at least 2 seed pairs; CANNOT decide")
    return [head, exact, t]


def plan_lines(plan: StudyPlan) -> list[str]:
    """The plan as text lines: one per unit, then per-configuration memory, totals, statistics."""
    lines = [f"study plan: {plan.name} -> {plan.out}"]
    width = max((len(u.name) for u in plan.units), default=10)
    lines.append(f"  {'unit':<{width}}  {'params':>8}  {'trainable':>9}  {'peak memory':>11}  {'time':>8}  status")
    for u in plan.units:
        mem = human_bytes(u.memory["peak"]) if u.memory else ("–" if u.total_params is None and u.stage not in (
            "train", "hpo", "sanity") else "unknown")
        params = human_count(u.total_params) if u.stage in ("train", "hpo", "sanity") else "–"
        trainable = human_count(u.trainable_params) if u.stage in ("train", "hpo", "sanity") else "–"
        status = "done" if u.done else "to run"
        lines.append(f"  {u.name:<{width}}  {params:>8}  {trainable:>9}  {mem:>11}  {human_seconds(u.seconds):>8}  {status}")
    lines.append("memory of each training configuration (weights + gradients + AdamW states + activations + other):")
    seen = set()
    for u in plan.units:
        if u.memory is None or u.stage not in ("train", "hpo", "sanity"):
            continue
        key = (u.stage, u.task, u.method, json.dumps(u.memory, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        m = u.memory
        pct = 100 * (u.trainable_params or 0) / max(u.total_params or 1, 1)
        lines.append(f"  {u.stage} {u.task} {u.method}: {human_count(u.trainable_params)} of {human_count(u.total_params)} "
                     f"trainable ({pct:.2f}%); {human_bytes(m['weights'])} + {human_bytes(m['gradients'])} + "
                     f"{human_bytes(m['optimizer'])} + {human_bytes(m['activations'])} + {human_bytes(m['other'])} = "
                     f"{human_bytes(m['peak'])}")
    unknown = sorted({u.basis for u in plan.units if u.total_params is None and u.stage in ("train", "hpo", "sanity")})
    for note in unknown:
        lines.append(f"  parameters and memory {note}")
    bases: dict[str, list[str]] = {}
    for u in plan.units:
        if u.stage in ("train", "hpo", "sanity") and u.basis:
            labels = bases.setdefault(u.basis, [])
            if f"{u.stage} {u.method}" not in labels:
                labels.append(f"{u.stage} {u.method}")
    for basis, labels in bases.items():
        lines.append(f"time of {', '.join(labels)}: {basis}")
    by_stage: dict[str, float] = {}
    for u in plan.units:
        if u.seconds is not None:
            by_stage[u.stage] = by_stage.get(u.stage, 0.0) + u.seconds
    done = sum(1 for u in plan.units if u.done)
    lines.append("total: " + human_seconds(plan.total_seconds) + " (" + ", ".join(
        f"{stage} {human_seconds(s)}" for stage, s in by_stage.items()) + ")")
    lines.append(f"done already: {done} of {len(plan.units)} units; left: {human_seconds(plan.remaining_seconds)}")
    lines += [f"verdicts: {line}" for line in decidability_lines(plan.decidability)]
    lines += [f"note: {n}" for n in plan.notes]
    return lines
