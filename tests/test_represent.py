"""Extraction alignment: padding and batch size never change pooled representations."""

import numpy as np
import pytest

from lorascope.data import get_task, load_split, subsample
from lorascope.data.tokenize import tokenize_dataset
from lorascope.models import load_classifier
from lorascope.represent import RepresentConfig, load_representations, run_represent
from lorascope.represent.extract import extract
from lorascope.represent.pooling import head_token, masked_mean


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
def test_padding_and_batch_size_do_not_change_representations(glue_dir, model):
    spec = get_task("rte")
    lm = load_classifier(model, spec.label_names, seed=0)
    ds = tokenize_dataset(subsample(load_split(spec, "validation"), 20, 0), lm.tokenizer,
                          is_pair=True, is_decoder=lm.is_decoder, max_length=96)
    lengths = [len(x) for x in ds["input_ids"]]
    assert min(lengths) < max(lengths)
    kw = dict(is_decoder=lm.is_decoder, progress=False)
    dyn16 = extract(lm.model, lm.tokenizer, ds, batch_size=16, **kw)
    fixed16 = extract(lm.model, lm.tokenizer, ds, batch_size=16, pad_to_max_length=True, max_length=96, **kw)
    dyn1 = extract(lm.model, lm.tokenizer, ds, batch_size=1, **kw)
    n_layers = lm.model.config.num_hidden_layers
    for pooling in ("mean", "head_token"):
        assert dyn16[pooling].shape == (n_layers + 1, 20, lm.model.config.hidden_size)
        assert _rel_err(fixed16[pooling], dyn16[pooling]) < 1e-5
        assert _rel_err(dyn1[pooling], dyn16[pooling]) < 1e-5


def test_pooling_ignores_padding_positions():
    import torch

    h = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    noisy = h.clone()
    noisy[0, 3:] = 1e6  # garbage in padded positions must not leak
    torch.testing.assert_close(masked_mean(noisy, mask)[0], h[0, :3].mean(0))
    torch.testing.assert_close(head_token(noisy, mask, is_decoder=True)[0], h[0, 2])
    torch.testing.assert_close(head_token(noisy, mask, is_decoder=False)[1], h[1, 0])


@pytest.mark.slow
def test_saved_file_round_trips_with_ids_and_fingerprints(glue_dir, tmp_path):
    cfg = RepresentConfig(task="sst2", model="tiny-llama", n_samples=12, max_length=64)
    reps = run_represent(cfg, tmp_path / "r.safetensors", progress=False)
    back = load_representations(tmp_path / "r.safetensors")
    assert back.ids == reps.ids and len(back.ids) == 12
    np.testing.assert_array_equal(back.states["mean"], reps.states["mean"])
    assert back.meta["input_fingerprint"] == reps.meta["input_fingerprint"]
    lora0 = run_represent(cfg.model_copy(update={"lora_init": True}), progress=False)
    assert lora0.meta["input_fingerprint"] == reps.meta["input_fingerprint"]
    assert lora0.meta["model_fingerprint"] != reps.meta["model_fingerprint"]
    np.testing.assert_array_equal(lora0.states["mean"], reps.states["mean"])  # B = 0: identical states


def _unpadded_mean(model, ds, layer: int) -> np.ndarray:
    """Reference: each example alone, no padding at all, mean over every position."""
    import torch

    out = []
    with torch.no_grad():
        for ids in ds["input_ids"]:
            h = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[layer]
            out.append(h[0].mean(0).numpy())
    return np.stack(out)


def test_mean_pooling_keeps_the_eos_separator_of_decoder_pairs(glue_dir, monkeypatch, single_thread):
    """A pad-id mask (EOS is both pad and pair separator) is caught: the planted bug fails the check."""
    import importlib

    extract_module = importlib.import_module("lorascope.represent.extract")  # the package re-exports a function of that name

    spec = get_task("rte")
    lm = load_classifier("tiny-llama", spec.label_names, seed=0)
    ds = tokenize_dataset(subsample(load_split(spec, "validation"), 8, 0), lm.tokenizer,
                          is_pair=True, is_decoder=True, max_length=96)
    eos = lm.tokenizer.eos_token_id
    assert lm.tokenizer.pad_token_id == eos and all(eos in ids[:-1] for ids in ds["input_ids"])
    reference = _unpadded_mean(lm.model, ds, layer=2)

    def pooled() -> np.ndarray:
        return extract(lm.model, lm.tokenizer, ds, is_decoder=True, batch_size=4, poolings=("mean",),
                       progress=False)["mean"][2]

    assert _rel_err(pooled(), reference) < 1e-5
    monkeypatch.setattr(extract_module, "pooling_mask", lambda batch: (batch["input_ids"] != eos).long())
    assert _rel_err(pooled(), reference) > 1e-3
