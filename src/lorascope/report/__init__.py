"""The study report: built only from saved artifacts (never from models)."""

from lorascope.report.build import build_report

__all__ = ["build_report"]
