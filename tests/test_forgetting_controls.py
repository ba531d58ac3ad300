"""The forgetting lens's controls fail on planted bugs, and its chunked loss is the full-logits loss.

Runs are built here without training (a LoRA adapter with a seeded non-zero B, a classifier with
seeded noise on every weight), over ``tiny-llama``; the held-out text is a small file, so no GLUE
data is needed. Each planted bug is patched into the lens where such a bug would live, and must
stop the lens with the ``DataError`` of the control built to catch it, before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lorascope.errors import DataError

LABELS = ("negative", "positive")
PASSAGES = [
    "The committee approved the budget after a long debate on Tuesday.",
    "Rain fell.",
    "A small museum in the old town displays tools used by the first settlers of the valley.",
    "She said the results would be published next year in a peer-reviewed journal.",
    "Prices rose sharply.",
    "The bridge, built in 1932, was closed for repairs after engineers found cracks in two of its supports.",
    "He plays the violin.",
    "Officials expect the new rail line to carry forty thousand passengers a day once it opens.",
    "The company reported a loss for the third quarter in a row.",
    "Birds sing at dawn in spring.",
    "Voters in the northern districts turned out in larger numbers than in any election since the war.",
    "The river floods every few years.",
]


def _record(folder: Path, source: str, method: str, seed: int, variant: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps({
        "status": "ok", "task": "sst2", "method": method, "variant": variant, "model": "tiny-llama", "seed": seed,
        "base_model_source": source, "label_names": list(LABELS), "is_decoder": True}), encoding="utf-8")


def lora_run(folder: Path, seed: int, variant: str | None = None, **lora) -> Path:
    """A LoRA run whose B matrices (``[out, r]``) are seeded noise, so its merged update is not zero."""
    from lorascope.models.adapt import prepare_for_method
    from lorascope.models.load import load_classifier

    loaded = load_classifier("tiny-llama", LABELS, seed=seed)
    wrapped, _ = prepare_for_method(loaded.model, "lora", dropout=0.0, **lora)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    wrapped.save_pretrained(folder / "adapter")
    _record(folder, loaded.source, "lora", seed, variant)
    return folder


def full_run(folder: Path, seed: int) -> Path:
    """A full fine-tuning run: every weight of the base classifier moved by seeded noise (1% of its scale)."""
    from lorascope.models.load import load_classifier

    loaded = load_classifier("tiny-llama", LABELS, seed=seed)
    generator = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for param in loaded.model.parameters():
            param.add_(0.01 * param.abs().mean() * torch.randn(param.shape, generator=generator))
    loaded.model.save_pretrained(folder / "model")
    loaded.tokenizer.save_pretrained(folder / "model")
    _record(folder, loaded.source, "full", seed)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("forgetting-runs")
    for seed in (1, 2):
        lora_run(root / f"sst2-lora-s{seed}", seed)
        full_run(root / f"sst2-full-s{seed}", seed)
    return root


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "heldout.txt"
    path.write_text("\n".join(PASSAGES) + "\n", encoding="utf-8")
    return path


def config(runs: Path, text_file: Path, **extra):
    from lorascope.lenses import ForgettingConfig

    return ForgettingConfig(base="tiny-llama", runs=str(runs), text_file=str(text_file), n_texts=len(PASSAGES),
                            max_length=24, batch_size=4, **extra)


CONTROLS = ["base_backbone_reinserted", "lora_at_init", "chunked_loss_is_full_logits_loss", "lm_head_kept",
            "lora_known_update", "backbone_is_the_runs_own"]


def assert_fails(control: str, runs: Path, text_file: Path, out: Path) -> None:
    from lorascope.lenses.forgetting import run_forgetting

    with pytest.raises(DataError, match=f"forgetting control '{control}' failed"):
        run_forgetting(config(runs, text_file), out)
    assert not out.exists()


# --- the correct lens ----------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("pair", [None, ["lora", "full"]])
def test_the_lens_passes_every_control_and_measures_each_run(runs, text_file, tmp_path, pair):
    from lorascope.lenses.forgetting import LOSS_RTOL, WEIGHT_RTOL, run_forgetting

    result = run_forgetting(config(runs, text_file, pair=pair), tmp_path / "f")
    controls = {c.name: c.model_dump() for c in result.controls}
    assert list(controls) == CONTROLS and all(c["passed"] for c in controls.values())
    assert controls["base_backbone_reinserted"]["forgetting"] == 0.0 and controls["lora_at_init"]["forgetting"] == 0.0
    # The controls with a known change measure a change, and the one computed apart from the lens.
    for name in ("lm_head_kept", "lora_known_update"):
        c = controls[name]
        assert c["forgetting"] != 0.0 and c["forgetting"] == pytest.approx(c["expected"], abs=LOSS_RTOL * 20)
    assert controls["lora_known_update"]["max_weight_difference"] <= WEIGHT_RTOL
    # Every load was checked for the head: 2 zero-change controls, 3 loads for the known changes, 2 per run.
    assert controls["lm_head_kept"]["loads_checked"] == 2 + 3 + 2 * 4
    own = controls["backbone_is_the_runs_own"]
    assert own["runs"] == 4 and set(own["per_run"]) == {r.run for r in result.runs}
    assert own["max_weight_difference"] <= WEIGHT_RTOL
    assert all(r.summary["forgetting"] != 0.0 for r in result.runs)
    assert result.comparison.primary == "lora" and result.comparison.seeds == [1, 2]
    assert (tmp_path / "f" / "forgetting.json").is_file()


@pytest.mark.slow
def test_rslora_dora_and_embedding_adapters_are_rebuilt_from_their_files(tmp_path, text_file):
    """No false alarm from ``backbone_is_the_runs_own`` on the adapters lorascope can train besides plain LoRA."""
    from lorascope.lenses.forgetting import WEIGHT_RTOL, run_forgetting

    lora_run(tmp_path / "runs" / "sst2-rslora-s1", 1, variant="lora_rslora", rslora=True)
    lora_run(tmp_path / "runs" / "sst2-dora-s1", 1, variant="lora_dora", dora=True)
    lora_run(tmp_path / "runs" / "sst2-emb-s1", 1, variant="lora_emb", targets=["q_proj", "embed_tokens"])
    result = run_forgetting(config(tmp_path / "runs", text_file), tmp_path / "f")
    own = next(c.model_dump() for c in result.controls if c.name == "backbone_is_the_runs_own")
    assert own["passed"] and own["runs"] == 3
    # Merged in float32 by PEFT, rebuilt in float64 here: rounding apart, no more.
    assert all(0.0 < v["max_weight_difference"] <= WEIGHT_RTOL for v in own["per_run"].values())


# --- planted bug (a): the LM head tied back to the fine-tuned embeddings --------------------------

def _never_untied(source):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, use_safetensors=True).eval()


def _retie_after_load(real):
    def load(lm, backbone):
        real(lm, backbone)
        lm.config.tie_word_embeddings = True
        lm.tie_weights()
        assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # the bug is really planted
    return load


def _copy_embeddings_into_head(real):
    def load(lm, backbone):
        real(lm, backbone)
        with torch.no_grad():
            lm.get_output_embeddings().weight.copy_(lm.get_input_embeddings().weight)
    return load


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["base never untied", "tie_weights after each load", "head overwritten by embeddings"])
def test_a_retied_head_fails_lm_head_kept(runs, text_file, tmp_path, monkeypatch, bug):
    import lorascope.lenses.forgetting as forgetting

    if bug == "base never untied":
        monkeypatch.setattr(forgetting, "_causal_base", _never_untied)
    elif bug == "tie_weights after each load":
        monkeypatch.setattr(forgetting, "load_backbone", _retie_after_load(forgetting.load_backbone))
    else:  # values copied, no shared storage: only a backbone whose embeddings differ from the head shows it
        monkeypatch.setattr(forgetting, "load_backbone", _copy_embeddings_into_head(forgetting.load_backbone))
    assert_fails("lm_head_kept", runs, text_file, tmp_path / "f")


@pytest.mark.slow
def test_lm_head_kept_fails_on_a_copied_head_even_without_the_check_after_each_load(text_file, tmp_path, monkeypatch):
    """The moved embeddings alone catch the head overwritten by them: the loss, not only the weights, differs."""
    import lorascope.lenses.forgetting as forgetting

    monkeypatch.setattr(forgetting, "load_backbone", _copy_embeddings_into_head(forgetting.load_backbone))
    monkeypatch.setattr(forgetting, "head_problem", lambda lm, base_head: None)  # the check after each load blinded
    (tmp_path / "runs").mkdir()
    full_run(tmp_path / "runs" / "sst2-full-s1", 1)
    with pytest.raises(DataError, match="forgetting control 'lm_head_kept' failed: with the input embeddings moved"):
        forgetting.run_forgetting(config(tmp_path / "runs", text_file), tmp_path / "f")


# --- planted bug (b): the LoRA update merged at the wrong scale -----------------------------------

def _merged_at(rescale):
    """``_backbone_state`` with each LoRA layer's scaling replaced by ``rescale(alpha, r, scaling)`` before the merge."""
    from lorascope.models.load import load_run

    def backbone_state(run):
        model = load_run(run.path).model
        if hasattr(model, "merge_and_unload"):
            for module in model.modules():
                if isinstance(getattr(module, "scaling", None), dict):
                    for key in module.scaling:
                        module.scaling[key] = rescale(module.lora_alpha[key], module.r[key], module.scaling[key])
            model = model.merge_and_unload()
        return getattr(model, model.base_model_prefix).state_dict()
    return backbone_state


def _merged_twice(run):
    from peft.tuners.lora import LoraLayer

    from lorascope.models.load import load_run

    model = load_run(run.path).model
    if hasattr(model, "merge_and_unload"):
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.merge()
                module.merged_adapters.clear()  # forgotten, so that the merge below adds it again
        model = model.merge_and_unload()
    return getattr(model, model.base_model_prefix).state_dict()


@pytest.mark.slow
@pytest.mark.parametrize("bug", ["alpha", "one", "twice"])
def test_a_lora_merged_at_the_wrong_scale_fails_lora_known_update(runs, text_file, tmp_path, monkeypatch, bug):
    import lorascope.lenses.forgetting as forgetting

    planted = {"alpha": _merged_at(lambda alpha, r, s: alpha), "one": _merged_at(lambda alpha, r, s: 1.0),
               "twice": _merged_twice}[bug]
    monkeypatch.setattr(forgetting, "_backbone_state", planted)
    assert_fails("lora_known_update", runs, text_file, tmp_path / "f")


# --- planted bug (c): another run's backbone scored under a run's name ----------------------------

@pytest.mark.slow
@pytest.mark.parametrize("swap", [
    {"sst2-lora-s1": "sst2-lora-s2", "sst2-lora-s2": "sst2-lora-s1"},  # seeds of one method swapped
    {"sst2-full-s1": "sst2-full-s2", "sst2-full-s2": "sst2-full-s1"},
    {"sst2-lora-s2": "sst2-full-s1"},  # one run scored as another method's
])
def test_another_runs_backbone_fails_backbone_is_the_runs_own(runs, text_file, tmp_path, monkeypatch, swap):
    import lorascope.lenses.forgetting as forgetting
    from lorascope.run_folder import RunFolder

    real = forgetting._backbone_state
    monkeypatch.setattr(forgetting, "_backbone_state",
                        lambda run: real(RunFolder(run.path.parent / swap.get(run.name, run.name))))
    with pytest.raises(DataError, match=f"forgetting control 'backbone_is_the_runs_own' failed: the backbone scored "
                                        f"as run {sorted(swap)[0]}"):
        forgetting.run_forgetting(config(runs, text_file), tmp_path / "f")
    assert not (tmp_path / "f").exists()


# --- the loss computed in chunks -----------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm():
    from lorascope.lenses.forgetting import _causal_base
    from lorascope.models.load import load_tokenizer
    from lorascope.models.registry import resolve_model

    source = resolve_model("tiny-llama")
    return _causal_base(source), load_tokenizer(source, is_decoder=True)


@pytest.mark.slow
@pytest.mark.parametrize("rows", [1, 7, 64, None])
def test_the_chunked_loss_is_the_full_logits_loss(tiny_lm, rows):
    """Over a 30k-token vocabulary, in chunks of a few positions: the loss of the plain [batch, seq, vocab] logits."""
    from lorascope.lenses.forgetting import full_logits_nll_sum, token_nll_sum

    lm, tokenizer = tiny_lm
    enc = tokenizer(PASSAGES, padding=True, truncation=True, max_length=24, return_tensors="pt")
    assert (enc["attention_mask"] == 0).any()  # pads present, to be left out
    with torch.inference_mode():
        chunked, n = token_nll_sum(lm, enc["input_ids"], enc["attention_mask"], rows_per_chunk=rows)
        full, n_full = full_logits_nll_sum(lm, enc["input_ids"], enc["attention_mask"])
    assert n == n_full == int(enc["attention_mask"][:, 1:].sum())
    assert chunked / n == pytest.approx(full / n_full, rel=1e-6)


def test_both_losses_are_the_float64_loss_on_a_peaked_distribution(tiny_lm):
    """With logits spread as a trained LM's are, each float32 path is the float64 loss to 1e-6 relative.

    A softmax over a strided class axis sums ~30k float32 terms one by one and is off by several
    times that: the reference path once failed the chunked-loss control on SmolLM2 for this reason.
    """
    import copy

    from lorascope.lenses.forgetting import full_logits_nll_sum, token_nll_sum

    lm, tokenizer = tiny_lm
    peaked = copy.deepcopy(lm)
    with torch.no_grad():
        head = peaked.get_output_embeddings().weight
        head.mul_(20.0)  # logits with a standard deviation of about 3, where a float32 sum errs most
    enc = tokenizer(PASSAGES, padding=True, truncation=True, max_length=24, return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"])
    with torch.inference_mode():
        logits = peaked(*args[:1], attention_mask=args[1]).logits
        assert 2.0 < float(logits.std()) < 5.0
        exact, n = token_nll_sum(copy.deepcopy(peaked).double(), *args)
        for nll_sum in (token_nll_sum, full_logits_nll_sum):
            loss, n32 = nll_sum(peaked, *args)
            assert n32 == n and loss / n == pytest.approx(exact / n, rel=1e-6, abs=0), nll_sum.__name__


def test_the_chunk_size_follows_the_vocabulary(tiny_lm, monkeypatch):
    import lorascope.lenses.forgetting as forgetting

    lm, tokenizer = tiny_lm
    vocab = lm.get_output_embeddings().weight.shape[0]
    seen = []
    real_head = lm.get_output_embeddings()
    monkeypatch.setattr(forgetting, "LOGITS_PER_CHUNK", 5 * vocab)
    handle = real_head.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    try:
        enc = tokenizer(PASSAGES[:3], padding=True, return_tensors="pt")
        with torch.inference_mode():
            forgetting.token_nll_sum(lm, enc["input_ids"], enc["attention_mask"])
    finally:
        handle.remove()
    n = int(enc["attention_mask"][:, 1:].sum())
    assert [s[0] for s in seen] == [5] * (n // 5) + ([n % 5] if n % 5 else []) and all(s[1] == vocab for s in seen)


def test_pads_are_left_out_by_the_attention_mask(tiny_lm):
    """A passage scores the same alone and right-padded beside a longer one (its pads are EOS, a real token id)."""
    from lorascope.lenses.forgetting import token_nll_sum

    lm, tokenizer = tiny_lm
    short, long = PASSAGES[1], PASSAGES[2]
    with torch.inference_mode():
        alone = [token_nll_sum(lm, **_ids(tokenizer, [text])) for text in (short, long)]
        together = token_nll_sum(lm, **_ids(tokenizer, [short, long]))
    assert together[1] == alone[0][1] + alone[1][1]
    assert together[0] == pytest.approx(alone[0][0] + alone[1][0], rel=1e-6)


def _ids(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def test_a_chunked_loss_that_counts_pads_fails_its_control(runs, text_file, tmp_path, monkeypatch):
    import lorascope.lenses.forgetting as forgetting

    real = forgetting.token_nll_sum
    monkeypatch.setattr(forgetting, "token_nll_sum",
                        lambda lm, ids, mask, rows=None: real(lm, ids, torch.ones_like(mask), rows))
    assert_fails("chunked_loss_is_full_logits_loss", runs, text_file, tmp_path / "f")
