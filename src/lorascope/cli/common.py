"""Shared CLI plumbing: the one-line error contract, quiet library logging, config assembly."""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from lorascope.config import StrictModel, build_config, load_yaml, parse_overrides
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
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def user_errors(fn: F) -> F:
    """Bad input -> one line on stderr and exit status 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LorascopeError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted: completed units are kept; rerun the same command to resume")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def assemble(cls: type[StrictModel], config_file: Path | None, options: dict[str, Any], overrides: list[str] | None):
    """Defaults < YAML file < command-line options < ``key=value`` overrides."""
    layers = [load_yaml(config_file)] if config_file else []
    layers.append({k: v for k, v in options.items() if v is not None})
    layers.append(parse_overrides(overrides or []))
    return build_config(cls, *layers, source=str(config_file) if config_file else "config")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()
