"""One grammar for every command: the same concept has the same option name everywhere, every
command with settings takes them the same way, and every example command line parses.

The checks walk the command tree typer builds (``typer.main.get_command``), so a new command is
checked without being named here. Example command lines, in ``--help`` texts and in the README's
code blocks, are parsed by the command itself (``make_context``, ``resilient_parsing=False``)
without running it, and their ``key=value`` settings are checked against the command's config.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer.core
import typer.main
from typer.testing import CliRunner

from lorascope.cli.main import app
from tests.conftest import REPO, write

ROOT = typer.main.get_command(app)


def _commands(group=ROOT, path: tuple[str, ...] = ("lorascope",)):
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


COMMANDS = dict(_commands())
SETTINGS_COMMANDS = {name: cmd for name, cmd in COMMANDS.items() if getattr(cmd, "settings", None) is not None}


def _options(command) -> list:
    return [p for p in command.params if isinstance(p, typer.core.TyperOption)]


def _arguments(command) -> list:
    return [p for p in command.params if isinstance(p, typer.core.TyperArgument)]


def _option_rows():
    """(command path, option) for every option of every command, ``--help`` aside."""
    return [(name, p) for name, cmd in COMMANDS.items() for p in _options(cmd) if p.name != "help"]


# Options whose items may hold a comma (a path, a column header): they repeat, commas do not split them.
REPEAT_ONLY = {"--adapter-root", "--text"}
# A settings key whose option is not named after it, and why.
OPTION_OF_KEY = {
    "base": "--model",  # the base model is --model on every command; drift and the lenses' configs name it `base`
}


def test_the_tree_is_walked():
    assert {"lorascope train", "lorascope drift", "lorascope study run", "lorascope data split"} <= set(COMMANDS)
    assert len(COMMANDS) >= 17


def test_every_command_is_a_lorascope_command():
    from lorascope.cli.common import Command

    plain = [name for name, cmd in COMMANDS.items() if not isinstance(cmd, Command)]
    assert not plain, f"not built with cls=Command (no old spellings, no settings help): {plain}"


# --- One concept, one option name -----------------------------------------------------------------


def test_the_base_model_is_model_everywhere():
    wrong = [(name, p.opts) for name, p in _option_rows() if p.name in ("model", "base") and p.opts[0] != "--model"]
    assert not wrong, f"the base model is --model on every command: {wrong}"
    assert not [name for name, p in _option_rows() if p.opts[0] == "--base"], "--base is a primary name"


def test_an_output_is_out_and_json_is_a_flag_that_prints_json():
    for name, p in _option_rows():
        help_text = (p.help or "").lower()
        if p.name == "out" or ("output" in help_text and not p.is_flag):  # not --overwrite (of an output)
            assert p.opts[0] == "--out", f"{name}: an output is --out, not {p.opts}"
        # JSON named in a help, but not an output folder's drift.json nor a file format's jsonl.
        if "json" in (p.name or "") or (re.search(r"\bjson\b(?!l|\.)", help_text) and "output" not in help_text):
            assert p.opts == ["--json"] and p.is_flag, f"{name}: JSON output is the flag --json, not {p.opts}"


def test_a_settings_file_is_config_with_c():
    for name, p in _option_rows():
        if p.name == "config" or (p.help or "").startswith("YAML file"):
            assert p.opts == ["--config", "-c"], f"{name}: a settings file is --config/-c, not {p.opts}"


def test_the_same_parameter_has_the_same_option_name_in_every_command():
    names: dict[str, set[str]] = {}
    for _, p in _option_rows():
        concept = "model" if p.name == "base" else p.name
        names.setdefault(concept, set()).add(p.opts[0])
    differing = {concept: spelled for concept, spelled in names.items() if len(spelled) > 1}
    assert not differing, f"one concept, several option names: {differing}"


def test_a_list_is_one_singular_option_that_repeats():
    for name, p in _option_rows():
        if p.multiple:
            assert not p.opts[0].endswith("s"), f"{name}: a list option is singular and repeats, not {p.opts[0]}"


def _minimal_args(command, leave_out=None) -> list[str]:
    """Values for the required parameters of ``command`` (but ``leave_out``), enough to parse."""
    args = []
    for p in command.params:
        if p is leave_out or not p.required:
            continue
        args += [p.opts[0], "x"] if isinstance(p, typer.core.TyperOption) else ["x"]
    return args


LIST_OPTIONS = [(n, p) for n, p in _option_rows() if p.multiple and p.opts[0] not in REPEAT_ONLY]


@pytest.mark.parametrize("name, option", LIST_OPTIONS, ids=[f"{n} {p.opts[0]}" for n, p in LIST_OPTIONS])
def test_a_list_option_also_takes_commas(name, option):
    command = COMMANDS[name]
    items = ["a=x", "b=y", "c=z"] if "name=" in (option.help or "") else ["a", "b", "c"]
    args = [option.opts[0], ",".join(items[:2]), option.opts[0], items[2], *_minimal_args(command, option)]
    ctx = command.make_context(name, args, resilient_parsing=False)
    assert list(ctx.params[option.name]) == items


# --- Old spellings: still accepted for one release, with one line on stderr -----------------------


OLD_SPELLINGS = [(name, p, old) for name, p in _option_rows() for old in p.opts[1:] if old.startswith("--")]


def test_every_old_spelling_is_declared_and_never_a_primary_name():
    from lorascope.cli.common import DEPRECATED_OPTIONS

    for name, p in _option_rows():
        assert p.opts[0] not in DEPRECATED_OPTIONS, f"{name}: {p.opts[0]} is an old spelling"
        for old in p.opts[1:]:
            if old.startswith("--"):
                assert DEPRECATED_OPTIONS.get(old) == p.opts[0], f"{name}: second name {old} is not a declared old spelling"
    declared = {old for _, _, old in OLD_SPELLINGS}
    assert declared == set(DEPRECATED_OPTIONS), "every declared old spelling is still accepted somewhere"


@pytest.mark.parametrize("name, option, old", OLD_SPELLINGS, ids=[f"{n} {old}" for n, _, old in OLD_SPELLINGS])
def test_an_old_spelling_parses_as_the_new_one_and_says_so_once(name, option, old, capsys):
    command = COMMANDS[name]
    value = "2" if option.type_descriptor.annotation is int else "a"
    rest = _minimal_args(command, option)
    new = command.make_context(name, [option.opts[0], value, *rest], resilient_parsing=False)
    assert capsys.readouterr().err == ""
    again = command.make_context(name, [old, value, old, value, *rest] if option.multiple else [old, value, *rest],
                                 resilient_parsing=False)
    expected = [value, value] if option.multiple else new.params[option.name]
    assert again.params[option.name] == expected
    assert capsys.readouterr().err == f"note: {old} is deprecated, use {option.opts[0]}\n"


def test_help_shows_the_current_names_and_the_old_one_as_former():
    result = CliRunner().invoke(app, ["drift", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--base" not in result.stdout.replace("(Formerly --base.)", "")
    assert "--model" in result.stdout and "(Formerly --base.)" in result.stdout


# --- Settings: --config and key=value on every command that has them, one precedence --------------


def test_every_command_with_key_value_settings_has_a_config_model_and_a_config_file():
    for name, command in COMMANDS.items():
        settings = getattr(command, "settings", None)
        key_values = [p for p in _arguments(command) if p.name == "overrides"]
        assert bool(key_values) == (settings is not None), f"{name}: key=value arguments without a config model"
        if settings is None:
            continue
        assert key_values[0].metavar == "KEY=VALUE"
        if command.settings_file == "--config":
            assert "--config" in [o for p in _options(command) for o in p.opts], f"{name}: settings but no --config"
        else:  # `study run STUDY.yaml`: the study file is the command's subject, a required argument
            assert [p.required for p in _arguments(command) if p.name == command.settings_file] == [True]
    assert len(SETTINGS_COMMANDS) >= 11


def test_an_option_that_sets_a_key_is_named_after_it_and_has_no_default_of_its_own():
    for name, command in SETTINGS_COMMANDS.items():
        fields = command.settings.model_fields
        for p in _options(command):
            if p.name not in fields:
                continue
            key = p.name
            expected = {OPTION_OF_KEY.get(key, "--" + key.replace("_", "-"))}
            if p.multiple and key.endswith("s"):
                expected.add("--" + key[:-1].replace("_", "-"))  # a list key's option is its singular
            assert p.opts[0] in expected, f"{name}: the option of '{key}' is {p.opts[0]}, expected one of {expected}"
            # A default of its own would beat the --config file: the key's default shows in --help instead.
            assert p.required or p.default in (None, ()), (
                f"{name}: {p.opts[0]} has a default ({p.default!r}) that would override --config")


def test_the_precedence_defaults_config_options_key_value(tmp_path):
    from lorascope.cli.common import assemble
    from lorascope.hpo import HpoConfig
    from lorascope.train.config import TrainConfig

    config = write(tmp_path / "c.yaml", "epochs: 2\nlr: 0.1\nseed: 5\nmodel: tiny-llama\n")
    cfg = assemble(TrainConfig, config, {"seed": 7, "model": None}, ["lr=0.2"])
    assert (cfg.epochs, cfg.seed, cfg.lr, cfg.model, cfg.batch_size) == (2, 7, 0.2, "tiny-llama", 16)
    # The search's own rule is the same; a key it does not have is a training setting of every trial.
    search = write(tmp_path / "h.yaml", "task: sst2\nmethod: lora\nn_trials: 3\ntrain: {epochs: 2, lr: 0.1}\n")
    cfg = assemble(HpoConfig, search, {"n_trials": 4}, ["lr=0.2", "seed=1"], rest=("train", TrainConfig))
    assert (cfg.n_trials, cfg.seed, cfg.train) == (4, 1, {"epochs": 2, "lr": 0.2})


def test_a_list_setting_takes_commas_as_a_list_option_does():
    from lorascope.cli.common import settings_arguments
    from lorascope.study.config import StudyConfig
    from lorascope.train.config import TrainConfig

    layer = settings_arguments(StudyConfig, ["tasks=sst2,mrpc", "seeds=42", "probes.probe_tasks=a,b", "name=x,y"])
    assert layer == {"tasks": ["sst2", "mrpc"], "seeds": [42], "probes": {"probe_tasks": ["a", "b"]}, "name": "x,y"}
    assert settings_arguments(TrainConfig, ["lora_targets=all-linear"]) == {"lora_targets": "all-linear"}
    assert settings_arguments(TrainConfig, ["lora_targets=q_proj,v_proj"]) == {"lora_targets": ["q_proj", "v_proj"]}


@pytest.mark.parametrize("name", [n for n, c in SETTINGS_COMMANDS.items() if c.settings_file == "--config"])
def test_every_command_reads_config_and_key_value_through_the_one_assemble(name, monkeypatch, tmp_path):
    """The command hands its --config file and key=value arguments to ``assemble`` (stopped there)."""
    from lorascope import extras

    command = COMMANDS[name]
    seen = {}

    class Stop(Exception):
        pass

    def stop(cls, config_file, options, overrides, rest=None):
        seen.update(cls=cls, config_file=config_file, overrides=list(overrides or []))
        raise Stop

    for module in ("common", "analysis", "lenses", "hpo", "serving"):
        monkeypatch.setattr(f"lorascope.cli.{module}.assemble", stop)
    extra = {"lorascope hpo": "hpo", "lorascope serve": "serve"}.get(name)
    if extra and extras.missing_modules(*extras.EXTRAS[extra]):
        pytest.skip(f"needs the {extra} extra")
    config = write(tmp_path / "c.yaml", "{}\n")
    args = [*name.split()[1:], *_minimal_args(command), "--config", str(config), "data_dir=here"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, Stop), result.output
    assert seen == {"cls": command.settings, "config_file": config, "overrides": ["data_dir=here"]}


# --- --help shows every setting with its type and default -----------------------------------------


@pytest.mark.parametrize("name", SETTINGS_COMMANDS)
def test_help_lists_every_key_with_type_and_default_from_the_model(name):
    from lorascope.study.keys import study_keys_rows

    result = CliRunner().invoke(app, [*name.split()[1:], "--help"], env={"COLUMNS": "3000"})
    assert result.exit_code == 0
    lines = {line.strip() for line in result.stdout.splitlines()}
    for key, kind, default, meaning in study_keys_rows(SETTINGS_COMMANDS[name].settings):
        key, default = key.strip("`"), default.strip("`")
        shown = [line for line in lines if line.startswith(f"{key} (")]
        assert len(shown) == 1, f"`{name} --help` lists '{key}' {len(shown)} times"
        assert shown[0].startswith(f"{key} ({kind}; {'required' if default == 'required' else f'default {default}'}")
        assert shown[0].endswith(meaning.strip()), shown[0]


# --- Every example parses ---------------------------------------------------------------------------


def _known_key(model, key: str) -> bool:
    """Whether ``key`` (dotted into sections and mappings) is a setting of ``model``."""
    head, _, rest = key.partition(".")
    field = model.model_fields.get(head)
    if field is None:
        return False
    if not rest:
        return True
    section = field.annotation if isinstance(field.annotation, type) and hasattr(field.annotation, "model_fields") else None
    if section is not None:
        return _known_key(section, rest)
    return "dict" in str(field.annotation)  # a mapping takes any key


def unknown_keys(command, key_values) -> list[str]:
    """The ``key=value`` arguments whose key ``command`` does not accept."""
    keys = [item.split("=", 1)[0] for item in key_values]
    rest = command.rest[1] if command.rest else None
    return [k for k in keys if not _known_key(command.settings, k) and not (rest and _known_key(rest, k))]


def parse_example(line: str) -> str | None:
    """Parse one ``lorascope …`` command line as its command would, without running it.

    Returns ``None`` when it parses with its current spellings and known keys, else what is wrong.
    """
    tokens = shlex.split(line, comments=True)
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):  # VAR=value lorascope …
        tokens.pop(0)
    if "lorascope.cli.main" in tokens:  # torchrun … -m lorascope.cli.main train …
        tokens = ["lorascope", *tokens[tokens.index("lorascope.cli.main") + 1:]]
    args, group, path = tokens[1:], ROOT, ["lorascope"]
    while isinstance(group, typer.core.TyperGroup):
        if not args or args[0].startswith("-"):  # `lorascope --version`: options of the root only
            names = {o for p in group.params for o in p.opts}
            unknown = [a for a in args if a.startswith("-") and a not in names]
            return f"unknown options {unknown}" if unknown else None
        if args[0] not in group.commands:
            return f"no command '{args[0]}'"
        path.append(args.pop(0))
        group = group.commands[path[-1]]
    command = group
    try:
        ctx = command.make_context(" ".join(path), args, resilient_parsing=False)
    except Exception as exc:  # a usage error; --help exits with status 0
        return None if getattr(exc, "exit_code", None) == 0 else f"{type(exc).__name__}: {exc}"
    from lorascope.cli.common import DEPRECATED_USED

    if ctx.meta.get(DEPRECATED_USED):
        return f"old spellings {ctx.meta[DEPRECATED_USED]}"
    bad = unknown_keys(command, ctx.params.get("overrides") or []) if getattr(command, "settings", None) else []
    return f"unknown keys {bad}" if bad else None


def _help_examples() -> list[tuple[str, str]]:
    out = []
    for name, command in COMMANDS.items():
        texts = [command.help or "", command.epilog or ""] + [p.help or "" for p in command.params]
        out += [(name, line.strip()) for text in texts for line in text.splitlines() if line.strip().startswith("lorascope ")]
    return out


HELP_EXAMPLES = _help_examples()


def test_every_command_with_options_shows_an_example():
    shown = {name for name, _ in HELP_EXAMPLES}
    without = [n for n, c in COMMANDS.items() if [p for p in c.params if p.name != "help"] and n not in shown]
    assert not without, f"no example command line in the help of {without}"


@pytest.mark.parametrize("name, line", HELP_EXAMPLES)
def test_every_example_in_help_parses(name, line):
    assert line.startswith(name + " "), f"an example in `{name} --help` runs another command: {line}"
    assert parse_example(line) is None, f"{line}: {parse_example(line)}"


@pytest.mark.parametrize("name", SETTINGS_COMMANDS)
def test_the_key_value_example_of_every_command_uses_keys_it_accepts(name):
    command = SETTINGS_COMMANDS[name]
    (argument,) = [p for p in _arguments(command) if p.name == "overrides"]
    examples = re.findall(r"\b([a-z_][\w.]*)=\S+", argument.help.partition("e.g.")[2].partition(";")[0])
    assert examples, f"{name}: the KEY=VALUE help shows no example"
    assert not unknown_keys(command, examples), f"{name}: its help suggests {unknown_keys(command, examples)}"


def readme_command_lines(text: str) -> list[str]:
    """Every ``lorascope …`` command line in the code blocks of a markdown text (continuations joined)."""
    lines, in_block, pending = [], False, ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if not in_block:
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        pending = ""
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # not a shell line (an unclosed quote)
            continue
        words = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
        if words[:1] == ["lorascope"] or "lorascope.cli.main" in words:
            # `[--token SECRET]`: an optional part of an example is parsed as if given.
            lines.append(re.sub(r"\[(-[^\]]*)\]", r"\1", line))
    return lines


def test_the_readme_examples_are_found():
    lines = readme_command_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(lines) >= 30 and any("study run" in line for line in lines) and any("torchrun" in line for line in lines)


def test_every_lorascope_command_in_the_readme_parses_with_current_spellings():
    lines = readme_command_lines((REPO / "README.md").read_text(encoding="utf-8"))
    failing = {line: parse_example(line) for line in lines if parse_example(line) is not None}
    assert not failing, "README.md examples that do not parse as written:\n" + "\n".join(
        f"{line}\n  -> {why}" for line, why in failing.items())


def test_the_example_parser_rejects_what_it_should():
    assert parse_example("lorascope drift --base minilm --runs r --out o") == "old spellings ['--base']"
    assert parse_example("lorascope represent --model minilm --out r bootstrap=2000") == "unknown keys ['bootstrap']"
    assert parse_example("lorascope train --tsk rte --out o").startswith("NoSuchOption")
    assert parse_example("lorascope hpo --task sst2 --method lora --out o train_limit=3 space.lr.high=1e-3") is None
    assert parse_example("lorascope nothing") == "no command 'nothing'"
    assert parse_example("lorascope --version") is None


def test_readme_lines_join_continuations_and_skip_other_tools():
    text = "x\n```bash\npip install lorascope\nlorascope train --task rte \\\n  --out o  # comment\n```\nlorascope not code\n"
    assert readme_command_lines(text) == ["lorascope train --task rte --out o  # comment"]
