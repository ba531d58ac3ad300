"""Shared CLI plumbing: the one-line error contract, quiet library logging, config assembly, and the
one grammar of every command (option names, old spellings, settings and their help)."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import types
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional, TypeVar

import typer
import typer.core
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from lorascope.config import StrictModel, build_config, check_report_to, load_yaml, parse_overrides
from lorascope.errors import LorascopeError

if TYPE_CHECKING:  # imported where used: `lorascope --help` loads no training code
    from lorascope.train.config import TrainConfig

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=StrictModel)


def quiet_libraries() -> None:
    """Keep library chatter (load reports, deprecation notices) off the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*mtime may not be reliable.*")
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # unannotated in transformers
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    ours = logging.getLogger("lorascope")
    if not ours.handlers:  # lorascope's own warnings: one line each on stderr
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        ours.addHandler(handler)
        ours.setLevel(logging.WARNING)
        ours.propagate = False
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def user_errors(fn: F) -> F:
    """The error contract of every command: bad input -> one line on stderr, exit status 2, nothing left behind.

    A :class:`LorascopeError` is printed as ``error: <message>`` on one line (rich markup in the
    message is shown as written) and the command exits with status 2, without a traceback.
    When the command has an ``out`` parameter, an output path that cannot be made (under a file, in a
    read-only folder) is refused before the command starts, and the ``<out>`` and ``<out>.partial`` this run
    created are removed, so that bad input found late still leaves no folder behind; what
    existed before (a run to resume, an earlier result) is never touched. Any other exception is
    a bug and propagates with its traceback (its ``.partial`` stays, to resume or inspect).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lorascope.artifacts import check_output_path

        out = kwargs.get("out")
        try:
            if isinstance(out, Path):  # before any work: a path that cannot be made is bad input too
                check_output_path(out, folder=None, what="--out")
        except LorascopeError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None
        created = _NewOutputs(out)
        try:
            return fn(*args, **kwargs)
        except LorascopeError as exc:
            created.remove()
            print_error(str(exc))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: completed units are kept; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_error(message: str) -> None:
    """``error: <message>`` as one line on stderr, the message printed verbatim (not as rich markup)."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)


class _NewOutputs:
    """Remembers which of ``<out>`` and ``<out>.partial`` did not exist, to remove them after bad input."""

    def __init__(self, out: Any) -> None:
        paths = [] if not isinstance(out, Path) else [out, *([out.with_name(out.name + ".partial")] if out.name else [])]
        # Only on rank 0: under torchrun every rank sees the same bad input and stops by itself.
        self.paths = [p for p in paths if not p.exists() and not p.is_symlink()] if is_main_process() else []

    def remove(self) -> None:
        for p in self.paths:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists() or p.is_symlink():
                p.unlink(missing_ok=True)


class OneLineErrors(typer.core.TyperGroup):
    """The root command group: usage errors (a bad option value, a missing option, an unknown
    option or command) follow the same contract as bad input: ``error: …`` on one line and exit
    status 2, instead of a usage block and a box.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except typer.TyperException as exc:  # the base of typer's (click's) usage and parameter errors
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # `lorascope` or `lorascope study` alone prints the help, as it should
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        usage = exc.exit_code == 2  # click's UsageError and its subclasses
        hint = f" (see '{ctx.command_path} --help')" if usage and ctx is not None else ""
        print_error(f"{where}{exc.format_message()}{hint}")
        raise typer.Exit(exc.exit_code) from None


def assemble(cls: type[M], config_file: Path | None, options: dict[str, Any], overrides: list[str] | None,
             rest: tuple[str, type[StrictModel]] | None = None) -> M:
    """A command's settings, by the one precedence every command follows:
    defaults < the ``--config`` YAML file < options < ``key=value`` arguments.

    Args:
        cls: The config model.
        config_file: The ``--config`` file, or ``None``.
        options: Keys of ``cls`` -> option values; ``None`` (an option not given) leaves the key to the
            layers below, which is why an option that sets a key has no default of its own.
        overrides: The ``key=value`` arguments.
        rest: ``(section, model)``: ``key=value`` arguments that are no key of ``cls`` go into that
            section, validated there by ``model`` (``hpo``: any training setting goes to ``train``).
    """
    layers = [load_yaml(config_file)] if config_file else []
    layers.append({k: v for k, v in options.items() if v is not None})
    layers.append(settings_arguments(cls, overrides, rest))
    return build_config(cls, *layers, source=str(config_file) if config_file else "config")


def assemble_train(config_file: Path | None, options: dict[str, Any], overrides: list[str] | None) -> TrainConfig:
    """A :class:`~lorascope.train.config.TrainConfig` as :func:`assemble` builds it, with the
    settings the Trainer would only check once the run folder exists checked now."""
    from lorascope.train.config import TrainConfig

    cfg = assemble(TrainConfig, config_file, options, overrides)
    check_report_to(cfg.report_to)
    return cfg


def settings_arguments(cls: type[StrictModel], overrides: list[str] | None,
                       rest: tuple[str, type[StrictModel]] | None = None) -> dict[str, Any]:
    """``key=value`` arguments as a layer of settings of ``cls`` (see :func:`assemble` for ``rest``).

    A list setting also takes the list as options do, comma-separated or as one item:
    ``tasks=sst2,mrpc`` and ``seeds=42`` mean ``tasks=[sst2, mrpc]`` and ``seeds=[42]``.
    """
    parsed = parse_overrides(overrides or [])
    if rest is None:
        return _lists_from_commas(cls, parsed)
    section, model = rest
    layer = _lists_from_commas(cls, {k: v for k, v in parsed.items() if k in cls.model_fields})
    others = {k: v for k, v in parsed.items() if k not in cls.model_fields}
    if others:
        layer[section] = _lists_from_commas(model, others)
    return layer


def _lists_from_commas(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            continue  # an unknown key: validation names it
        section = _section(field.annotation)
        kind = _list_kind(field.annotation)
        if section is not None and isinstance(value, dict):
            out[key] = _lists_from_commas(section, value)
        elif isinstance(value, str) and "," in value and kind:
            out[key] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool) and kind == "list":
            out[key] = [value]  # only where nothing but a list is allowed (lora_targets=all-linear stays a word)
    return out


def _list_kind(annotation: Any) -> str:
    """``list`` where a field holds only lists (or null), ``some`` where a list is one of its types, else ``""``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _list_kind(args[0])
    if origin is list:
        return "list"
    if origin in (typing.Union, types.UnionType):
        kinds = [_list_kind(a) for a in args if a is not type(None)]
        return "list" if kinds and all(k == "list" for k in kinds) else ("some" if any(kinds) else "")
    return ""


def _section(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def is_main_process() -> bool:
    """Whether this process is rank 0 (``RANK`` unset or 0), the one that prints and cleans up under torchrun."""
    return int(os.environ.get("RANK", "0")) == 0


# --- One grammar for every command ------------------------------------------------------------
#
# The same concept has the same option everywhere: the base model is --model, an output folder
# --out, machine-readable output --json (JSON on stdout), a settings file --config (-c), a list a
# singular option that repeats and also takes commas (--task sst2 --task mrpc, --task sst2,mrpc).
# An option that sets a setting is named after its key (--n-trials for n_trials; a list key's option
# is its singular: --batch-size for batch_sizes). tests/test_cli_grammar.py checks every command.

# Old spellings, accepted for one more release with a note on stderr: old -> the name that replaced it.
# An option declares its old spelling as its second name: typer.Option(None, "--model", "--base").
DEPRECATED_OPTIONS: dict[str, str] = {
    "--base": "--model",
    "--tasks": "--task",
    "--methods": "--method",
    "--trials": "--n-trials",
    "--batch-sizes": "--batch-size",
}
# ctx.meta keys: the old spellings a command line used; the FILE of the old form `--json FILE`.
DEPRECATED_USED = "lorascope.deprecated_used"
JSON_FILE = "lorascope.json_file"
_JSON_FLAG = "--json"

PRECEDENCE = "defaults < --config file < options < key=value"


class Command(typer.core.TyperCommand):
    """A ``lorascope`` command: pass ``cls=Command`` (or :func:`command_class`) to ``app.command``.

    What it adds to typer's command, the same for every command:

    - An old spelling (:data:`DEPRECATED_OPTIONS`) still works and prints one line on stderr,
      ``note: --base is deprecated, use --model``; ``--help`` shows the current name only.
    - ``--json`` prints JSON on stdout; the old ``--json FILE`` still writes FILE, with a note
      (:func:`json_file`).
    - A command with settings (:func:`command_class`) lists every key under its options with its
      type, default and meaning, generated from the config model, and an option that sets a key
      shows that key's default.
    """

    settings: ClassVar[type[StrictModel] | None] = None
    # (section, model) of the key=value arguments that are no key of `settings` (see `assemble`).
    rest: ClassVar[tuple[str, type[StrictModel]] | None] = None
    # What gives the settings file: the --config option, or an argument (`study run STUDY.yaml`).
    settings_file: ClassVar[str] = "--config"
    settings_intro: ClassVar[str] = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.settings is not None and not self.epilog:
            self.epilog = settings_help(self)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's (click's) Context
        args = _old_json_file(self, ctx, list(args))
        old = {name: new for p in self.params if isinstance(p, typer.core.TyperOption)
               for name, new in _old_names(p).items()}
        used = list(dict.fromkeys(t.split("=", 1)[0] for t in _options_part(args) if t.split("=", 1)[0] in old))
        ctx.meta.setdefault(DEPRECATED_USED, []).extend(used)
        for name in used if not ctx.resilient_parsing else []:  # not while the shell completes a word
            print_note(f"{name} is deprecated, use {old[name]}")
        return super().parse_args(ctx, args)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        with _help_view(self):
            super().format_help(ctx, formatter)


def command_class(settings: type[StrictModel] | None = None, *, rest: tuple[str, type[StrictModel]] | None = None,
                  settings_file: str = "--config", intro: str | None = None) -> type[Command]:
    """The :class:`Command` class of a command whose settings are the config model ``settings``.

    Args:
        settings: The model that ``--config`` files and ``key=value`` arguments fill.
        rest: See :func:`assemble`.
        settings_file: ``--config``, or the name of the argument that is the settings file.
        intro: The first line of the settings list (default: how settings are given, and their precedence).
    """
    if settings is None:
        return Command
    intro = intro or (f"Settings: each as key=value, or as a key of the --config YAML file ({PRECEDENCE}). "
                      "Every key, with its type and default:")
    attrs = {"settings": settings, "rest": rest, "settings_file": settings_file, "settings_intro": intro}
    return type(f"{settings.__name__}Command", (Command,), attrs)


def settings_help(command: Command) -> str:
    """Every key of ``command.settings`` on one line: ``key (type; default; option): meaning``.

    Rendered by the function that renders the README's table of study-file keys, so that the two
    say the same; a key inside a section is dotted (``drift.n_samples``).
    """
    from lorascope.study.keys import study_keys_rows

    assert command.settings is not None
    options = {p.name: p.opts[0] for p in command.params if isinstance(p, typer.core.TyperOption)}
    lines = []
    for key, kind, default, meaning in study_keys_rows(command.settings):
        key, default = key.strip("`"), default.strip("`")
        detail = [kind, "required" if default == "required" else f"default {default}"]
        if key in options:
            detail.append(f"option {options[key]}")
        # The epilog is rich markup: a default such as [mean, head_token] must print as written.
        lines.append(f"[bold]{escape(key)}[/] " + escape(f"({'; '.join(detail)})" + (f": {meaning}" if meaning else "")))
    return escape(command.settings_intro) + "\n\n" + "\n".join(lines)


def config_option() -> Any:
    """``--config FILE`` (``-c``): the YAML file of settings, the same option on every command with settings."""
    return typer.Option(None, "--config", "-c", show_default=False,
                        help=f"YAML file of settings (the keys listed below; {PRECEDENCE}).")


def settings_argument(example: str, what: str = "Settings", where: str = "every key is listed below") -> Any:
    """The ``KEY=VALUE...`` argument of a command with settings; ``example`` must use keys it accepts (tested)."""
    return typer.Argument(None, metavar="KEY=VALUE", show_default=False,
                          help=f"{what} as key=value, e.g. {example}; {where}.")


def json_option() -> Any:
    """``--json``: print the result as JSON on stdout instead of the table, the same flag on every command that has one."""
    return typer.Option(False, _JSON_FLAG, help="Print the result as JSON on stdout (instead of the table).")


def comma_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """A list option's values, each also split at commas: ``--task sst2,mrpc --task rte`` -> 3 items."""
    if values is None:
        return None
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def comma_named_list(values: Optional[list[str]]) -> Optional[list[str]]:
    """:func:`comma_list` for ``name=path`` items: a piece without ``=`` belongs to the path before it
    (``--adapter a=x,b=y`` is 2 items; ``--adapter a=runs/x,y`` is one, whose path holds a comma)."""
    if values is None:
        return None
    items: list[str] = []
    for value in values:
        for i, piece in enumerate(value.split(",")):
            if i and "=" not in piece:
                items[-1] += "," + piece
            else:
                items.append(piece)
    return [item.strip() for item in items if item.strip()]


def json_file(ctx: typer.Context) -> Path | None:
    """The FILE of the old form ``--json FILE`` (write the JSON there and print the table, as that form did)."""
    return ctx.meta.get(JSON_FILE)


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout, as :func:`lorascope.artifacts.write_json` writes it to a file."""
    typer.echo(json.dumps(data, indent=2, default=_json_value))


def _json_value(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def print_note(message: str) -> None:
    """``note: <message>`` as one line on stderr (once, under torchrun)."""
    if is_main_process():
        err_console.print(f"[yellow]note:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _old_names(param: typer.core.TyperOption) -> dict[str, str]:
    """The old spellings among ``param``'s names -> its current name (its first)."""
    return {name: param.opts[0] for name in param.opts[1:] if name in DEPRECATED_OPTIONS}


def _options_part(args: list[str]) -> list[str]:
    """The tokens before ``--`` (after it, everything is an argument)."""
    return args[: args.index("--")] if "--" in args else args


def _old_json_file(command: Command, ctx: Any, args: list[str]) -> list[str]:
    """``--json FILE`` / ``--json=FILE`` (the old form) -> ``--json``, FILE kept in ``ctx.meta``."""
    if not any(isinstance(p, typer.core.TyperOption) and _JSON_FLAG in p.opts for p in command.params):
        return args
    head, tail = _options_part(args), args[len(_options_part(args)):]
    out: list[str] = []
    i = 0
    while i < len(head):
        token, following = head[i], head[i + 1] if i + 1 < len(head) else None
        path = None
        if token.startswith(_JSON_FLAG + "="):
            path = token.split("=", 1)[1]
        elif token == _JSON_FLAG and following and not following.startswith("-") and "=" not in following:
            path, i = following, i + 1  # a KEY=VALUE after --json is an argument, not a file
        out.append(_JSON_FLAG if path is not None else token)
        if path is not None:
            ctx.meta[JSON_FILE] = Path(path)
            ctx.meta.setdefault(DEPRECATED_USED, []).append(f"{_JSON_FLAG} FILE")
            print_note(f"{_JSON_FLAG} FILE is deprecated, use {_JSON_FLAG} > FILE")
        i += 1
    return out + tail


@contextlib.contextmanager
def _help_view(command: Command) -> Iterator[None]:
    """While ``--help`` is rendered: current option names only (an old one is named in the help), and
    an option that sets a key shows the key's default (its own default is ``None``, see :func:`assemble`)."""
    fields = command.settings.model_fields if command.settings is not None else {}
    saved = []
    for p in command.params:
        if not isinstance(p, typer.core.TyperOption):
            continue
        saved.append((p, p.opts, p.help, p.default))
        old = list(_old_names(p))
        if old:
            p.opts = [name for name in p.opts if name not in old]
            p.help = f"{p.help or ''} (Formerly {', '.join(old)}.)".strip()
        field = fields.get(p.name or "")
        if field is not None and p.default is None and not p.required and not field.is_required():
            value = field.get_default(call_default_factory=True)
            if isinstance(value, (str, int, float)) or (isinstance(value, list) and value):
                p.default = value
    try:
        yield
    finally:
        for p, opts, help_text, default in saved:
            p.opts, p.help, p.default = opts, help_text, default
