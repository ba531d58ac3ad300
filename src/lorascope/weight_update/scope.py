"""Names for the sets of matrices a weight-lens measure covers: matrix types and one-line descriptions.

Pure string work on parameter names (``model.layers.3.self_attn.q_proj.weight``), kept free of
numpy so that the report can describe a saved result's scope without loading anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# The block index in a parameter name: Llama/Mistral ``layers``, BERT ``layer``, GPT-2 ``h``, others ``blocks``.
LAYER = re.compile(r"\.(?:layers|layer|h|blocks)\.(\d+)\.")


def layer_of(name: str) -> int | None:
    """The block index in a parameter name (``model.layers.3.self_attn.q_proj.weight`` -> 3)."""
    m = LAYER.search(name)
    return int(m.group(1)) if m else None


def matrix_type(name: str) -> str:
    """What a matrix is, whatever its block: ``model.layers.3.mlp.up_proj.weight`` -> ``mlp.up_proj``;
    a matrix outside the blocks keeps its whole name (``model.embed_tokens``, ``bert.pooler.dense``)."""
    m = LAYER.search(name)
    return (name[m.end():] if m else name).removesuffix(".weight")


def short_types(names: Iterable[str]) -> list[str]:
    """The matrix types of ``names`` in first-seen order, each shortened to its last part where that
    stays unambiguous (``q_proj, v_proj``; BERT's several ``dense`` keep ``intermediate.dense``)."""
    types = list(dict.fromkeys(matrix_type(n) for n in names))
    last = [t.rsplit(".", 1)[-1] for t in types]
    return [short if last.count(short) == 1 else t for t, short in zip(types, last)]


def describe_matrices(names: Iterable[str]) -> str:
    """``q_proj, v_proj of 6 layers (12 matrices)``: the types, the blocks they span, how many matrices.

    Matrices outside the blocks (embeddings, a pooler) are named after the per-block types.
    """
    names = list(names)
    in_blocks = [n for n in names if layer_of(n) is not None]
    outside = [n for n in names if layer_of(n) is None]
    parts = []
    if in_blocks:
        layers = len({layer_of(n) for n in in_blocks})
        parts.append(f"{', '.join(short_types(in_blocks))} of {layers} layer{'s' if layers != 1 else ''}")
    if outside:
        parts.append(", ".join(short_types(outside)))
    count = f"{len(names)} matri{'ces' if len(names) != 1 else 'x'}"
    return f"{' and '.join(parts)} ({count})" if parts else count
