"""Which device a served model runs on: the resolver every stage shares (:mod:`lorascope.models.device`)."""

from __future__ import annotations

from lorascope.models.device import resolve_device

__all__ = ["resolve_device"]
