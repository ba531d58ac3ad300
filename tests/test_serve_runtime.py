"""The serving runtime reproduces PEFT's logits on every path and never alters the base weights.

Adapters are made from tiny random Llama and BERT classifiers: three per architecture, with
different ranks, alphas, target modules, scaling rules (plain, rsLoRA, rank_pattern) and heads
(one with 3 labels instead of 2), and with LoRA B randomised so a missing update would show.
"""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForSequenceClassification

from lorascope.errors import LorascopeError
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.head import HeadSwitch
from lorascope.serve.lora_linear import LoraLinear

TOL = 1e-4
LENGTHS = [7, 3, 5, 1, 6, 4]  # right-padded rows of varying length

# name -> (target modules by architecture, other LoraConfig arguments, n_labels)
ADAPTERS = {
    "sst2": ({"llama": ["q_proj", "v_proj"], "bert": ["query", "value"]}, dict(r=4, lora_alpha=8), 2),
    "mrpc": (
        {"llama": ["q_proj", "k_proj", "v_proj"], "bert": ["query", "key", "value"]},
        dict(r=8, lora_alpha=16, use_rslora=True),
        2,
    ),
    "mnli": (
        {"llama": ["v_proj", "down_proj"], "bert": ["value", "dense"]},  # BERT 'dense' includes the pooler
        dict(r=2, lora_alpha=4, rank_pattern={"v_proj|value": 4}),
        3,
    ),
}


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Run these tiny models on one thread: threads buy nothing at these sizes, and on a loaded
    machine a descheduled OpenMP worker turns microsecond matmuls into scheduler-tick waits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_base(arch: str, n_labels: int = 2, hidden: int = 32) -> torch.nn.Module:
    """A tiny random classifier; the backbone is identical for a given arch and hidden size."""
    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(
            vocab_size=128, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, num_labels=2,
        )
        model = LlamaForSequenceClassification(config)
    else:
        config = BertConfig(
            vocab_size=128, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=32, num_labels=2,
        )
        model = BertForSequenceClassification(config)
    if n_labels != 2:
        head_name = "score" if arch == "llama" else "classifier"
        backbone = {k: v for k, v in model.state_dict().items() if not k.startswith(head_name)}
        config.num_labels = n_labels
        model = type(model)(config)
        model.load_state_dict(backbone, strict=False)
    return model.eval()


def save_adapter(arch: str, name: str, folder, seed: int, hidden: int = 32, **overrides) -> None:
    targets, kwargs, n_labels = ADAPTERS[name]
    config = LoraConfig(task_type="SEQ_CLS", target_modules=targets[arch], **{**kwargs, **overrides})
    peft_model = get_peft_model(make_base(arch, n_labels, hidden), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            # B starts at zero and the head is fresh: randomise both so a wrong path cannot pass.
            if "lora_" in param_name or "modules_to_save" in param_name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    peft_model.save_pretrained(folder)


def make_inputs(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(LENGTHS):
        ids[row, :length] = torch.randint(1, 128, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


@pytest.fixture(scope="module", params=["llama", "bert"])
def case(request, tmp_path_factory):
    """(arch, {name: folder}, inputs, {name: PEFT logits [batch, n_labels]})."""
    arch = request.param
    root = tmp_path_factory.mktemp(arch)
    folders = {name: root / name for name in ADAPTERS}
    for seed, (name, folder) in enumerate(folders.items()):
        save_adapter(arch, name, folder, seed=10 + seed)
    ids, mask = make_inputs()
    expected = {}
    for name, folder in folders.items():
        reference = PeftModel.from_pretrained(make_base(arch, ADAPTERS[name][2]), folder).eval()
        with torch.inference_mode():
            expected[name] = reference(input_ids=ids, attention_mask=mask).logits
    return arch, folders, (ids, mask), expected


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < TOL


def test_merged_path_matches_peft(case):
    arch, folders, (ids, mask), expected = case
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), folders)
    assert runtime.adapters == list(folders)
    for name in folders:
        assert_close(runtime.predict_logits(ids, mask, name, mode="merged"), expected[name])
        assert runtime.active_adapter == name
        # The same uniform batch through the per-row path gives the same logits.
        assert_close(runtime.predict_logits(ids, mask, name, mode="bgmv"), expected[name])


@pytest.mark.parametrize("cache_size", [1, 8])
def test_switching_sequence_matches_peft(case, cache_size):
    arch, folders, (ids, mask), expected = case
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), folders, merged_cache_size=cache_size)
    sequence = ["sst2", "mrpc", "sst2", "sst2", "mnli", "mrpc", "mnli", "sst2"]
    for step, name in enumerate(sequence):
        rows = slice(step % 3, step % 3 + 3)  # varying sub-batches of the padded inputs
        assert_close(runtime.predict_logits(ids[rows], mask[rows], name), expected[name][rows])


def test_mixed_batch_matches_peft_and_single_rows(case):
    arch, folders, (ids, mask), expected = case
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), folders)
    rows = ["sst2", "mnli", "mrpc", "sst2", "mrpc", "mnli"]
    runtime.predict_logits(ids, mask, "mrpc")  # leave an adapter merged: the mixed path must unmerge
    for mode in ("auto", "bgmv"):
        logits = runtime.predict_logits(ids, mask, rows, mode=mode)
        assert logits.shape == (len(rows), 3)
        assert runtime.active_adapter is None
        for row, name in enumerate(rows):
            n_labels = ADAPTERS[name][2]
            assert_close(logits[row, :n_labels], expected[name][row])
            assert torch.isneginf(logits[row, n_labels:]).all()
            single = runtime.predict_logits(ids[row : row + 1], mask[row : row + 1], name)
            assert_close(logits[row : row + 1, :n_labels], single)
    # Only 2-label adapters requested: the output is 2 wide.
    two = runtime.predict_logits(ids[:2], mask[:2], ["sst2", "mrpc"])
    assert_close(two, torch.stack([expected["sst2"][0], expected["mrpc"][1]]))


def test_peft_adapter_names_mixed_batch_agrees(case):
    arch, folders, (ids, mask), expected = case
    reference = PeftModel.from_pretrained(make_base(arch), folders["sst2"], adapter_name="sst2")
    reference.load_adapter(folders["mrpc"], adapter_name="mrpc")
    reference.eval()
    rows = ["sst2", "mrpc", "mrpc", "sst2", "mrpc", "sst2"]
    with torch.inference_mode():
        peft_logits = reference(input_ids=ids, attention_mask=mask, adapter_names=rows).logits
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), {n: folders[n] for n in ("sst2", "mrpc")})
    assert_close(runtime.predict_logits(ids, mask, rows), peft_logits)


def test_base_weights_bit_identical_after_1000_switches(case):
    arch, folders, (ids, mask), _ = case
    model = make_base(arch)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    plain = make_base(arch)
    with torch.inference_mode():
        base_logits = plain(input_ids=ids, attention_mask=mask).logits
    runtime = MultiAdapterRuntime.from_folders(model, folders, merged_cache_size=1)
    names = runtime.adapters
    for step in range(1000):
        runtime.activate(names[step % len(names)])
        if step % 250 == 0:
            runtime.predict_logits(ids, mask, names[(step + 1) % len(names)])
            runtime.predict_logits(ids, mask, [names[i % len(names)] for i in range(len(LENGTHS))])
    runtime.restore_base()
    adapted = [m for m in model.modules() if isinstance(m, (LoraLinear, HeadSwitch))]
    assert len(adapted) > 4
    for module in adapted:
        assert module.weight is module.base_weight
    state = model.state_dict()
    assert state.keys() == original.keys()
    for key, value in original.items():
        assert torch.equal(state[key], value), key
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, base_logits)


def test_remove_and_re_add_adapter(case):
    arch, folders, (ids, mask), expected = case
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), folders)
    runtime.predict_logits(ids, mask, "mrpc")
    runtime.remove_adapter("mrpc")
    assert runtime.adapters == ["sst2", "mnli"] and runtime.active_adapter is None
    logits = runtime.predict_logits(ids, mask, ["mnli", "sst2"] * 3)
    for row in range(len(LENGTHS)):
        name = "mnli" if row % 2 == 0 else "sst2"
        assert_close(logits[row, : ADAPTERS[name][2]], expected[name][row])
    runtime.add_adapter("mrpc", folders["mrpc"])
    assert_close(runtime.predict_logits(ids, mask, "mrpc"), expected["mrpc"])
    with pytest.raises(LorascopeError, match="unknown adapter 'mrpc2'"):
        runtime.remove_adapter("mrpc2")


def test_bf16_close_to_fp32_and_restore_exact(case):
    arch, folders, (ids, mask), expected = case
    model = make_base(arch).to(torch.bfloat16)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    runtime = MultiAdapterRuntime.from_folders(model, folders, merged_cache_size=1)
    rows = ["sst2", "mnli", "mrpc", "sst2", "mrpc", "mnli"]
    mixed = runtime.predict_logits(ids, mask, rows)
    assert mixed.dtype == torch.bfloat16
    for name in folders:
        # bf16 error budget: what PEFT itself loses in bf16 (large for the strongly perturbing
        # rsLoRA adapter on the tiny random Llama), with headroom for different rounding.
        reference = PeftModel.from_pretrained(make_base(arch, ADAPTERS[name][2]).to(torch.bfloat16), folders[name])
        with torch.inference_mode():
            peft_bf16 = reference.eval()(input_ids=ids, attention_mask=mask).logits.float()
        budget = 3 * (peft_bf16 - expected[name]).abs().max().item() + 0.02
        merged = runtime.predict_logits(ids, mask, name).float()
        assert (merged - expected[name]).abs().max().item() < budget
        for row in [i for i, n in enumerate(rows) if n == name]:
            width = ADAPTERS[name][2]
            assert (mixed[row, :width].float() - expected[name][row]).abs().max().item() < budget
    runtime.restore_base()
    for key, value in model.state_dict().items():
        assert value.dtype == torch.bfloat16 and torch.equal(value, original[key]), key


def test_bad_inputs_raise_clear_errors(case, tmp_path):
    arch, folders, (ids, mask), _ = case
    runtime = MultiAdapterRuntime.from_folders(make_base(arch), {"sst2": folders["sst2"]})
    with pytest.raises(LorascopeError, match=r"unknown adapter 'nope'; loaded: 'sst2'"):
        runtime.predict_logits(ids, mask, "nope")
    with pytest.raises(LorascopeError, match="unknown adapter 'nope'"):
        runtime.predict_logits(ids, mask, ["sst2"] * 5 + ["nope"])
    with pytest.raises(LorascopeError, match="6 rows"):
        runtime.predict_logits(ids, mask, ["sst2"] * 2)
    with pytest.raises(LorascopeError, match="unknown mode"):
        runtime.predict_logits(ids, mask, "sst2", mode="fast")
    with pytest.raises(LorascopeError, match="attention_mask must have the shape"):
        runtime.predict_logits(ids, mask[:, :2], "sst2")
    with pytest.raises(LorascopeError, match="already loaded"):
        runtime.add_adapter("sst2", folders["sst2"])
    with pytest.raises(LorascopeError, match="folder not found"):
        runtime.add_adapter("gone", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LorascopeError, match="no adapter_config.json"):
        runtime.add_adapter("empty", tmp_path / "empty")

    # Trained on a wider base: the shapes cannot fit.
    save_adapter(arch, "sst2", tmp_path / "wide", seed=3, hidden=48)
    with pytest.raises(LorascopeError, match="different base"):
        runtime.add_adapter("wide", tmp_path / "wide")
    # DoRA changes the maths; it must be refused, not served wrong.
    save_adapter(arch, "sst2", tmp_path / "dora", seed=3, use_dora=True)
    with pytest.raises(LorascopeError, match="DoRA"):
        runtime.add_adapter("dora", tmp_path / "dora")
    # A hand-edited config whose LoRA bias is enabled.
    config_path = folders["sst2"] / "adapter_config.json"
    config = json.loads(config_path.read_text())
    (tmp_path / "bias").mkdir()
    (tmp_path / "bias" / "adapter_config.json").write_text(json.dumps({**config, "bias": "all"}))
    with pytest.raises(LorascopeError, match="bias='all'"):
        runtime.add_adapter("bias", tmp_path / "bias")
    # Failed loads leave the runtime serving what it had.
    assert runtime.adapters == ["sst2"]
    with pytest.raises(LorascopeError, match="already served"):
        MultiAdapterRuntime(runtime.model)
    with pytest.raises(LorascopeError, match="merged_cache_size"):
        MultiAdapterRuntime(make_base(arch), merged_cache_size=0)
