"""What the API knows and says about a loaded adapter: its labels, its task and the input shape it takes."""

from __future__ import annotations

from dataclasses import dataclass

from lorascope.data.tasks import GLUE_TASKS
from lorascope.serve.sources import AdapterSource


@dataclass(frozen=True)
class AdapterMeta:
    """What the API says about a loaded adapter.

    Attributes:
        labels: Label id -> name (``LABEL_<i>`` when the folder does not record them).
        task: The task it was trained for, when known.
        pairs: Whether it classifies sentence pairs (True) or single texts (False); None when its
            task is unknown (a bare adapter folder), and then either is accepted.
        root: The folder as whoever loaded it named it (the operator's command line, or a client's
            load request), shown as ``root`` in ``GET /v1/models``; never the resolved real path,
            so symlink targets and the layout under the adapter roots stay private.
        created: Unix time it was loaded (0 until the engine has it).
    """

    labels: tuple[str, ...]
    task: str | None = None
    pairs: bool | None = None
    root: str | None = None
    created: int = 0

    @classmethod
    def of(cls, source: AdapterSource, root: str | None = None) -> AdapterMeta:
        """What an adapter's folder or run records about it; ``root``: the path as it was given."""
        spec = source.task_spec
        return cls(source.label_names or (), source.task, None if spec is None else spec.is_pair, root)

    @property
    def takes_pairs(self) -> bool | None:
        """Whether the adapter classifies sentence pairs; None when unknown (either is accepted)."""
        if self.pairs is not None:
            return self.pairs
        spec = GLUE_TASKS.get(self.task) if self.task else None
        return None if spec is None else spec.is_pair
