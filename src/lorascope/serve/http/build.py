"""Build the server's app from a base model name and adapter folders (what ``lorascope serve`` does)."""

from __future__ import annotations

from fastapi import FastAPI

from lorascope.errors import LorascopeError
from lorascope.models.base_recipe import open_base
from lorascope.serve import MultiAdapterRuntime
from lorascope.serve.device import resolve_device
from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.app import create_app
from lorascope.serve.http.encoder import TextEncoder
from lorascope.serve.http.service import Loaded
from lorascope.serve.http.settings import ServerSettings
from lorascope.serve.sources import resolve_adapter, shared_label_names


def build_app(
    base: str,
    adapters: dict[str, str],
    settings: ServerSettings,
    *,
    dtype: str = "fp32",
    device: str = "auto",
    merged_cache_size: int = 8,
    seed: int = 0,
    lazy: bool = False,
) -> FastAPI:
    """Load ``base``, its adapters (name -> run folder or PEFT folder) into a runtime, and wrap it in the API.

    Args:
        base: Alias, folder, Hub id or ``tinyllama-shape``.
        adapters: Start-up adapters; may be empty when ``settings.adapter_roots`` allows loading later.
        settings: Server limits and security.
        dtype: ``fp32`` or ``bf16``.
        device: ``auto``, ``cpu`` or ``cuda``.
        merged_cache_size: Adapters whose merged weights the runtime keeps.
        seed: Seeds the base head (used only by adapters that bring no head of their own).
        lazy: Load the model once the server has started, so the port opens at once: the probes
            answer (``/ready`` 503) while it loads. The adapter folders are still checked here.
            Without it, everything is loaded before this returns (``app.state.engine`` is set).

    Raises:
        LorascopeError: On an unusable base or adapter, or with nothing to serve (with ``lazy``,
            errors found only while loading the model stop the server instead; see
            :func:`lorascope.serve.http.run.serve`).
    """
    if not adapters and not settings.adapter_roots:
        raise LorascopeError("nothing to serve: give --adapter name=path, or --adapter-root to load adapters at run time")
    sources = [resolve_adapter(name, path) for name, path in adapters.items()]
    base_id = settings.served_model_name or base
    if base_id in adapters:
        raise LorascopeError(f"adapter name '{base_id}' is the base model's name in /v1/models; rename the adapter")

    def load() -> Loaded:
        # The runtime gives every adapter its own head, so heads of different widths are fine here.
        labels = shared_label_names(sources, strict=False) if sources else ("LABEL_0", "LABEL_1")
        spec = open_base(base, labels, seed)
        model = spec.load(dtype, resolve_device(device))
        runtime = MultiAdapterRuntime.from_folders(model, {s.name: s.folder for s in sources}, merged_cache_size)
        meta = {s.name: AdapterMeta.of(s, adapters[s.name]) for s in sources}
        return Loaded(runtime, TextEncoder(spec.tokenizer, spec.is_decoder, settings.max_length), meta)

    if lazy:
        return create_app(None, settings=settings, loader=load, base_name=base)
    loaded = load()
    return create_app(loaded.runtime, loaded.encoder, settings, loaded.meta, base_name=base)
