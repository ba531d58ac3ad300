"""Hyperparameter search: best config, resume, shared studies, diverging trials, space validation."""

from __future__ import annotations

import shutil
import warnings

import optuna
import pytest
import typer
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from lorascope.config import build_config, load_yaml
from lorascope.errors import ConfigError
from lorascope.hpo import Choice, Fixed, FloatRange, HpoConfig, resolve_space, run_hpo
from lorascope.hpo.record import HpoRecord
from lorascope.hpo.search import _over_budget
from lorascope.train.config import TrainConfig
from tests.conftest import GLUE_DIR

# Searches that train are in the slow tier (make test runs it; make test-fast skips it); the config
# and error tests are fast.

# Tiny trials (about 2 s each on CPU): 16 training and 8 dev examples, one epoch, short inputs.
TINY_TRAIN = dict(train_limit=16, eval_limit=8, max_length=32, data_dir=str(GLUE_DIR))
TINY_SPACE = dict(epochs=1, batch_size=[8, 16])


def tiny(n_trials: int = 3, **kw) -> HpoConfig:
    space = {**TINY_SPACE, **kw.pop("space", {})}
    train = {**TINY_TRAIN, **kw.pop("train", {})}
    return HpoConfig(task="mrpc", method="lora", model="tiny-llama", n_trials=n_trials, train=train, space=space, **kw)


def load(out, name="hpo-mrpc-lora-tiny-llama", url=None) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url or f"sqlite:///{out / 'optuna.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One finished 3-trial LoRA search, shared by the read-only tests below."""
    if not (GLUE_DIR / "MRPC" / "dev.tsv").is_file():
        pytest.skip(f"GLUE data not found at {GLUE_DIR}")
    out = tmp_path_factory.mktemp("hpo") / "search"
    record = run_hpo(tiny(3), out)
    assert HpoRecord.read(out / "hpo.json") == record  # it returns what it wrote
    return out, record.model_dump()


@pytest.mark.slow
def test_best_config_is_a_train_config_inside_the_space_equal_to_the_best_trial(searched):
    out, summary = searched
    study = load(out)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    best = study.best_trial
    cfg = build_config(TrainConfig, load_yaml(out / "best_config.yaml"))
    space = tiny().search_space()
    for name, param in space.params.items():
        value = getattr(cfg, name)
        if isinstance(param, FloatRange):
            assert param.low <= value <= param.high
        elif isinstance(param, Choice):
            assert value in param.choices
        else:
            assert isinstance(param, Fixed) and value == param.value
    for name, value in best.params.items():
        assert getattr(cfg, name) == pytest.approx(value)
    assert (cfg.task, cfg.method, cfg.model, cfg.lora_r, cfg.train_limit) == ("mrpc", "lora", "tiny-llama", 8, 16)
    assert cfg.save_model is True  # trials never save a model; the production config does
    header = (out / "best_config.yaml").read_text().splitlines()[:2]
    assert f"trial {best.number}: dev f1 = {best.value!r}" in header[1]
    assert summary["best"]["number"] == best.number and summary["best"]["value"] == max(t.value for t in study.trials)
    assert [t["state"] for t in summary["trials"]] == ["COMPLETE"] * 3
    # Trials are run folders without a saved model.
    for n in range(3):
        assert (out / "trials" / f"trial-{n}" / "metrics.json").is_file()
        assert not (out / "trials" / f"trial-{n}" / "adapter").exists()


@pytest.mark.slow
def test_resume_runs_only_the_missing_trials_and_replaces_abandoned_ones(searched, tmp_path):
    src, _ = searched
    out = tmp_path / "search"
    shutil.copytree(src, out)
    before = [(t.params, t.datetime_complete) for t in load(out).trials]
    # A worker killed mid-trial leaves a RUNNING trial and a half-written run folder.
    load(out).ask()
    (out / "trials" / "trial-3.partial").mkdir()

    summary = run_hpo(tiny(4), out).model_dump()
    trials = load(out).trials
    assert [(t.params, t.datetime_complete) for t in trials[:3]] == before
    assert trials[3].state == TrialState.FAIL and "worker stopped" in trials[3].user_attrs["reason"]
    assert trials[4].state == TrialState.COMPLETE and len(trials) == 5  # exactly one new trial ran
    assert not (out / "trials" / "trial-3.partial").exists()
    assert summary["counts"] == {"complete": 4, "fail": 1}

    run_hpo(tiny(4), out)  # budget already met: nothing runs
    assert len(load(out).trials) == 5


@pytest.mark.slow
def test_workers_share_one_study_and_its_total_budget(glue_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    # Worker A is started with a budget of 1 (e.g. a first, smaller round).
    run_hpo(tiny(1, storage=url), tmp_path / "a")
    # A third worker died mid-trial: its trial stays RUNNING with a last heartbeat, then goes stale.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1)
        dead = optuna.load_study(study_name="hpo-mrpc-lora-tiny-llama", storage=storage).ask()
        storage.record_heartbeat(dead._trial_id)
    # Worker B joins with the study's total of 2: it waits for the RUNNING trial, fails it once its
    # heartbeat is stale (3 x heartbeat_s), and runs the one missing trial.
    lines: list[str] = []
    summary = run_hpo(tiny(2, storage=url, heartbeat_s=1), tmp_path / "b", log=lines.append).model_dump()
    trials = load(None, url=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert any("waiting for 1 trial" in line for line in lines)
    assert [t["folder"].split("/")[-3] for t in summary["trials"] if t["state"] == "COMPLETE"] == ["a", "b"]
    assert not (tmp_path / "b" / "optuna.db").exists()
    # A rerun of worker A with the total budget runs nothing and sees B's trial and the same best.
    again = run_hpo(tiny(2, storage=url), tmp_path / "a").model_dump()
    assert len(load(None, url=url).trials) == 3 and again["best"] == summary["best"]
    # Joining with other base settings is refused, naming the difference.
    with pytest.raises(ConfigError, match=r"train_limit: stored 16 != current 32"):
        run_hpo(tiny(2, storage=url, train=dict(train_limit=32)), tmp_path / "c")


def test_over_budget_trials_lose_the_race_by_number():
    study = optuna.create_study(direction="maximize")
    for v in (0.1, 0.2):
        study.add_trial(optuna.trial.create_trial(value=v, params={}, distributions={}))
    trial = study.ask()
    assert _over_budget(trial, 2) and not _over_budget(trial, 3)


@pytest.mark.slow
def test_diverging_trial_is_recorded_and_the_search_goes_on(glue_dir, tmp_path):
    # Seed 7 proposes lr 1e12 for trial 0 and the sane 2e-3 for trial 1.
    cfg = HpoConfig(
        task="mrpc", method="full", model="tiny-llama", n_trials=2, seed=7,
        train={**TINY_TRAIN, "max_grad_norm": 1e12}, space={"lr": [1e12, 2e-3], "epochs": 1, "batch_size": 8},
    )
    summary = run_hpo(cfg, tmp_path).model_dump()
    states = [(t["state"], t["status"], t["params"]["lr"]) for t in summary["trials"]]
    assert states == [("PRUNED", "failed", 1e12), ("COMPLETE", "ok", 2e-3)]
    reason = summary["trials"][0]["reason"]
    assert "became nan" in reason or "became inf" in reason
    assert summary["best"]["number"] == 1 and summary["counts"] == {"complete": 1, "pruned": 1}
    assert yaml.safe_load((tmp_path / "best_config.yaml").read_text())["lr"] == 2e-3


@pytest.mark.slow
def test_cli_prints_trials_and_best_config_and_errors_in_one_line(searched, tmp_path):
    from lorascope.cli.hpo import register

    app = typer.Typer()
    register(app)
    app.command("noop")(lambda: None)  # a second command keeps `hpo` a named subcommand
    out, _ = searched
    settings = [f"{k}={v}" for k, v in TINY_TRAIN.items()] + ["space.epochs=1", "space.batch_size=[8, 16]"]
    args = ["hpo", "--task", "mrpc", "--method", "lora", "--model", "tiny-llama", "--n-trials", "3", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, *settings])
    assert result.exit_code == 0, result.output
    assert "best trial" in result.output and "best_config.yaml" in result.output
    bad = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "x"), "space.lrr=1"])
    assert bad.exit_code == 2 and "space.lrr: unknown parameter 'lrr'" in bad.output
    assert not (tmp_path / "x").exists()


def test_space_defaults_follow_the_protocol():
    lora, full = resolve_space("lora"), resolve_space("full")
    assert lora.params["lr"] == FloatRange(5e-5, 5e-3, log=True) and full.params["lr"] == FloatRange(1e-6, 5e-5, log=True)
    assert lora.params["batch_size"] == Choice((4, 8, 16)) and full.params["batch_size"] == Choice((1, 2, 4))
    assert lora.params["lora_alpha"] == Choice((8, 16, 32, 64)) and lora.params["lora_r"] == Fixed(8)
    assert lora.params["lora_dropout"] == FloatRange(0.0, 0.3) and "lora_alpha" not in full.params
    # Overrides: replace, add, drop; YAML shorthands for choices and constants.
    overrides = {"lr": {"low": "1e-4", "high": 1e-3, "log": True}, "max_length": [64, 128], "lora_dropout": None, "lora_r": 16}
    space = resolve_space("lora", overrides)
    assert space.params["lr"] == FloatRange(1e-4, 1e-3, True) and space.params["max_length"] == Choice((64, 128))
    assert "lora_dropout" not in space.params and space.params["lora_r"] == Fixed(16)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"lrr": [1, 2]}, r"space.lrr: unknown parameter 'lrr'"),
        ({"lr": {"low": 0, "high": 1e-3, "log": True}}, r"space.lr: a log-scale range needs low > 0"),
        ({"lr": {"low": -1e-3, "high": 1e-3, "log": True}}, r"space.lr: a log-scale range needs low > 0"),
        ({"lr": {"low": 1e-3, "high": 1e-4}}, r"space.lr: low must be below high"),
        ({"lr": {"low": 1e-4}}, r"space.lr: a range needs both low and high"),
        ({"lr": {"low": 1e-4, "high": 1e-3, "step": 2}}, r"space.lr: unknown key 'step'"),
        ({"batch_size": {"low": 1, "high": 8}}, r"space.batch_size: 'batch_size' is not a float setting"),
        ({"lora_dropout": {"low": 0.1, "high": 1.5}}, r"space.lora_dropout \(value 1.5\).*less than 1"),
        ({"batch_size": []}, r"space.batch_size.choices: expected a non-empty list"),
        ({"lora_targets": [["q_proj"], ["v_proj"]]}, r"space.lora_targets.choices: each choice must be"),
        ({"method": ["full"]}, r"space.method: 'method' is set per search"),
    ],
)
def test_bad_space_is_a_config_error_naming_the_parameter(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve_space("lora", override)


def test_bad_search_settings_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"train.task: set task at the top level"):
        run_hpo(tiny(train={"task": "rte"}), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"train: unknown key 'epoch'"):
        run_hpo(tiny(train={"epoch": 1}), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"storage: expected a database URL"):
        run_hpo(tiny(storage="optuna.db"), tmp_path / "a")
    with pytest.raises(ConfigError, match=r"model 'nope'"):
        run_hpo(HpoConfig(task="mrpc", method="lora", model="nope"), tmp_path / "a")
    assert not (tmp_path / "a").exists()
