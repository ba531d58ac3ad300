"""Shared CLI plumbing: the one-line error contract, quiet library logging, config assembly."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
import typer.core
from rich.console import Console
from rich.markup import escape

from lorascope.config import StrictModel, build_config, check_report_to, load_yaml, parse_overrides
from lorascope.errors import LorascopeError

console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def quiet_libraries() -> None:
    """Keep library chatter (load reports, deprecation notices) off the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*mtime may not be reliable.*")
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
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
    When the command has an ``out`` parameter, the ``<out>`` and ``<out>.partial`` this run
    created are removed, so that bad input found late still leaves no folder behind; what
    existed before (a run to resume, an earlier result) is never touched. Any other exception is
    a bug and propagates with its traceback (its ``.partial`` stays, to resume or inspect).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        created = _NewOutputs(kwargs.get("out"))
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
        paths = [] if not isinstance(out, Path) else [out, out.with_name(out.name + ".partial")]
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


def assemble(cls: type[StrictModel], config_file: Path | None, options: dict[str, Any], overrides: list[str] | None):
    """Defaults < YAML file < command-line options < ``key=value`` overrides."""
    layers = [load_yaml(config_file)] if config_file else []
    layers.append({k: v for k, v in options.items() if v is not None})
    layers.append(parse_overrides(overrides or []))
    return build_config(cls, *layers, source=str(config_file) if config_file else "config")


def assemble_train(config_file: Path | None, options: dict[str, Any], overrides: list[str] | None):
    """A :class:`~lorascope.train.config.TrainConfig` as :func:`assemble` builds it, with the
    settings the Trainer would only check once the run folder exists checked now."""
    from lorascope.train.config import TrainConfig

    cfg = assemble(TrainConfig, config_file, options, overrides)
    check_report_to(cfg.report_to)
    return cfg


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def with_settings_help(command: F, config: type[StrictModel], what: str = "Settings (key=value)") -> F:
    """Append every setting of ``config`` with its meaning to ``command``'s ``--help``."""
    lines = [f"{name}: {f.description or ''}".rstrip(": ") for name, f in config.model_fields.items()]
    command.__doc__ = (command.__doc__ or "") + f"\n\n{what}:\n\n" + "\n\n".join(lines)
    return command
