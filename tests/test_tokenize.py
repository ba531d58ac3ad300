"""Tokenisation formats, truncation, and padding invariance of the classifier's logits."""

import pytest
import torch

from lorascope.data import get_task, load_split, subsample
from lorascope.data.tokenize import _truncate_pair, encode_decoder, tokenize_dataset
from lorascope.models import load_classifier
from tests.helpers import logits_of


def test_truncate_pair_longest_first():
    a, b = list(range(10)), list(range(100, 104))
    ta, tb = _truncate_pair(a, b, 8)
    assert (len(ta), len(tb)) == (4, 4) and ta == a[:4] and tb == b
    assert _truncate_pair([1], [2], 5) == ([1], [2])


def test_decoder_pair_format_is_a_eos_b():
    lm = load_classifier("tiny-llama", ("x", "y"), seed=0)
    tok = lm.tokenizer
    enc = encode_decoder(tok, ["hello world"], ["good bye"], max_length=64)["input_ids"][0]
    a = tok("hello world", add_special_tokens=False)["input_ids"]
    b = tok("good bye", add_special_tokens=False)["input_ids"]
    assert enc == a + [tok.eos_token_id] + b  # no BOS: this tokenizer does not add one
    short = encode_decoder(tok, ["hello world"], ["good bye"], max_length=3)["input_ids"][0]
    assert len(short) == 3 and short[1] == tok.eos_token_id


@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
def test_dynamic_and_fixed_padding_give_the_same_logits(glue_dir, model):
    spec = get_task("mrpc")
    lm = load_classifier(model, spec.label_names, seed=0)
    dev = subsample(load_split(spec, "validation"), 24, seed=0)
    ds = tokenize_dataset(dev, lm.tokenizer, is_pair=True, is_decoder=lm.is_decoder, max_length=128)
    lengths = [len(x) for x in ds["input_ids"]]
    assert max(lengths) < 128 and min(lengths) < max(lengths)  # padding really differs per batch
    dynamic = logits_of(lm.model, lm.tokenizer, ds, batch_size=8)
    fixed = logits_of(lm.model, lm.tokenizer, ds, batch_size=8, pad_to_max_length=True, max_length=128)
    single = logits_of(lm.model, lm.tokenizer, ds, batch_size=1)
    torch.testing.assert_close(dynamic, fixed, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dynamic, single, rtol=1e-5, atol=1e-5)
