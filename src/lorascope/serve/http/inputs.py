"""What a classify request's inputs must be, checked before anything is tokenised or batched.

Every check names the offending input (``inputs[3]``, or ``inputs[3][1]`` for the second text of
a pair), and the first offending input decides the answer:

* more than ``max_batch_size`` inputs: 413 ``too_many_inputs``;
* a list that is not ``[text_a, text_b]``: 422 ``invalid_input``;
* a pair for an adapter trained on single texts, or a single text for one trained on pairs
  (known only when the adapter's task is a GLUE task): 422 ``invalid_input``;
* a text longer than ``max_input_chars``: 413 ``input_too_long``;
* a text that is not valid Unicode (a lone surrogate, which JSON's ``"\\ud800"`` escapes can
  produce; tokenizers refuse it): 422 ``invalid_text``;
* an empty or whitespace-only text: 422 ``empty_input``.

A text that passes these can still hold no tokens (only zero-width or control characters, say);
the encoder finds that out while tokenising and the answer is 422 ``empty_input`` as well.
"""

from __future__ import annotations

from lorascope.serve.http.adapter_meta import AdapterMeta
from lorascope.serve.http.errors import ApiError
from lorascope.serve.http.settings import ServerSettings


def input_name(index: int, side: int | None = None, field: str = "inputs") -> str:
    """How an error message names an input: ``inputs[i]``, or ``inputs[i][side]`` for one text of a pair.

    ``field`` is the request field that holds the inputs (``input`` in the vLLM-compatible routes).
    """
    return f"{field}[{index}]" if side is None else f"{field}[{index}][{side}]"


def check_inputs(inputs: list[str | list[str]], settings: ServerSettings, adapter: str, meta: AdapterMeta,
                 field: str = "inputs") -> None:
    """Raise an :class:`ApiError` for the first input a classify request must not carry.

    Args:
        inputs: The request's inputs, as validated by the schema (strings or lists of strings).
        settings: The limits.
        adapter: The adapter's name (for messages).
        meta: What is known about the adapter (whether it takes pairs).
        field: The request field holding the inputs, for messages.

    Raises:
        ApiError: 413 or 422, naming the input and what is wrong with it.
    """
    if len(inputs) > settings.max_batch_size:
        raise ApiError(413, "too_many_inputs", f"{len(inputs)} inputs; at most {settings.max_batch_size} per request")
    for i, item in enumerate(inputs):
        _check_kind(i, item, adapter, meta, field)
        if isinstance(item, str):
            check_text(input_name(i, field=field), item, settings.max_input_chars)
        else:
            for side, text in enumerate(item):
                check_text(input_name(i, side, field), text, settings.max_input_chars)


def _check_kind(index: int, item: str | list[str], adapter: str, meta: AdapterMeta, field: str) -> None:
    is_pair = not isinstance(item, str)
    if is_pair and len(item) != 2:
        raise ApiError(422, "invalid_input",
                       f"{input_name(index, field=field)}: a pair must be [text_a, text_b], got {len(item)} texts")
    wanted = meta.takes_pairs
    if wanted is None or wanted == is_pair:
        return
    task = f" (task {meta.task})" if meta.task else ""
    if wanted:
        message = f"adapter '{adapter}'{task} classifies sentence pairs: send [text_a, text_b], not a single text"
    else:
        message = f"adapter '{adapter}'{task} classifies single texts: send a string, not a pair"
    raise ApiError(422, "invalid_input", f"{input_name(index, field=field)}: {message}")


def check_text(where: str, text: str, max_chars: int) -> None:
    """Raise an :class:`ApiError` (413 or 422) naming ``where`` if ``text`` is too long, not Unicode, or blank."""
    if len(text) > max_chars:
        raise ApiError(413, "input_too_long", f"{where}: longer than {max_chars} characters")
    bad = _lone_surrogate(text)
    if bad is not None:
        raise ApiError(422, "invalid_text", f"{where}: not valid Unicode (lone surrogate U+{ord(text[bad]):04X} "
                                            f"at character {bad}); send UTF-8 text")
    if not text.strip():
        raise ApiError(422, "empty_input", f"{where}: the text is {'empty' if not text else 'only whitespace'}")


def _lone_surrogate(text: str) -> int | None:
    """Position of the first character UTF-8 cannot encode (a lone surrogate), or None."""
    if text.isascii():  # the common case, without building a bytes copy
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None
