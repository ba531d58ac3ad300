"""Model aliases: SmolLM2 from GGUF is a Llama classifier; LoRA at initialisation changes nothing."""

import pytest
import torch

from lorascope.errors import ConfigError
from lorascope.models import load_classifier, prepare_for_method, resolve_model
from lorascope.models.adapt import default_lora_targets


def _batch(tokenizer):
    texts = ["the movie was great", "a dull , lifeless film that never ends"]
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.slow
def test_smollm2_is_a_llama_classifier_and_lora_init_is_identity():
    lm = load_classifier("smollm2", ("neg", "pos"), seed=0)
    cfg = lm.model.config
    assert type(lm.model).__name__ == "LlamaForSequenceClassification"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (30, 576, 9, 3)
    assert 134_000_000 < sum(p.numel() for p in lm.model.parameters()) < 135_500_000
    assert lm.is_decoder and lm.tokenizer.pad_token == lm.tokenizer.eos_token
    batch = _batch(lm.tokenizer)
    lm.model.eval()
    with torch.no_grad():
        base = lm.model(**batch).logits
        peft_model, counts = prepare_for_method(lm.model, "lora")
        peft_model.eval()
        adapted = peft_model(**batch).logits
    assert torch.equal(base, adapted)  # B = 0 at init: exactly the base model
    assert counts.trainable < 0.01 * counts.total


@pytest.mark.parametrize("model", ["tiny-llama", "minilm"])
def test_lora_targets_and_identity_at_init(model):
    lm = load_classifier(model, ("a", "b", "c"), seed=0)
    assert lm.model.config.num_labels == 3
    expected = ["q_proj", "v_proj"] if lm.is_decoder else ["query", "value"]
    assert sorted(default_lora_targets(lm.model_type)) == expected
    batch = _batch(lm.tokenizer)
    lm.model.eval()
    with torch.no_grad():
        base = lm.model(**batch).logits
        peft_model, _ = prepare_for_method(lm.model, "lora", targets=None)
        peft_model.eval()
        assert torch.equal(base, peft_model(**batch).logits)


def test_head_depends_on_seed_backbone_does_not():
    a = load_classifier("tiny-llama", ("a", "b"), seed=1).model
    b = load_classifier("tiny-llama", ("a", "b"), seed=2).model
    assert torch.equal(a.model.layers[0].self_attn.q_proj.weight, b.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(a.score.weight, b.score.weight)


def test_bad_model_and_targets():
    with pytest.raises(ConfigError, match="not an alias"):
        resolve_model("definitely-not-a-model")
    lm = load_classifier("tiny-llama", ("a", "b"), seed=0)
    with pytest.raises(ConfigError, match="module 'query' not found"):
        prepare_for_method(lm.model, "lora", targets=["query"])


def test_the_random_weights_alias_lives_in_the_registry_and_is_refused_for_training():
    from lorascope.errors import ConfigError
    from lorascope.models.registry import alias_availability, random_weights_alias, resolve_model

    assert random_weights_alias("tinyllama-shape") is not None and random_weights_alias("minilm") is None
    assert "tinyllama-shape" in [row[0] for row in alias_availability()]
    with pytest.raises(ConfigError, match="model 'tinyllama-shape': has random weights.*need a pretrained model"):
        resolve_model("tinyllama-shape")
