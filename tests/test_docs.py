"""The README's table of study-file keys is the one rendered from the model that validates study files."""

from typing import Literal, Optional

from pydantic import Field, PositiveInt

from lorascope.config import StrictModel
from lorascope.report.text import table
from lorascope.study.keys import END, START, study_keys_rows, study_keys_table
from tests.conftest import REPO


def _readme_table() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"README.md must hold {START} … {END} once"
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def test_readme_lists_every_study_key_as_the_model_defines_it():
    assert _readme_table() == study_keys_table(), (
        "README.md's study-file table differs from StudyConfig: paste the output of "
        "`python -m lorascope.study.keys` between its study-keys markers")


def _leaves(model, prefix=""):
    """Every key a study file can set, dotted through sections at any depth."""
    for name, field in model.model_fields.items():
        inner = getattr(field.annotation, "model_fields", None)
        yield from (_leaves(field.annotation, f"{prefix}{name}.") if inner is not None else [f"{prefix}{name}"])


def test_every_key_of_every_section_has_a_row_and_sections_none():
    from lorascope.study.config import StudyConfig

    keys = [row[0].strip("`") for row in study_keys_rows()]
    assert keys == list(_leaves(StudyConfig))


class _Section(StrictModel):
    size: PositiveInt = Field(4, description="a size")


class _Example(StrictModel):
    kind: Literal["a", "b"] = Field("a", description="which | one")
    ratio: float = Field(0.5, gt=0, le=1, description="a share")
    limit: Optional[PositiveInt] = Field(None, description="a cap")
    names: list[str] = Field(default_factory=lambda: ["x", "y"], description="names")
    settings: dict[str, int] = Field(default_factory=dict, description="more")
    section: _Section = Field(default_factory=_Section)
    needed: str = Field(description="no default")


def test_types_defaults_and_sections_render_as_a_study_file_reads_them():
    rows = {row[0]: row[1:] for row in study_keys_rows(_Example)}
    assert rows == {
        "`kind`": ["one of a, b", "`a`", "which | one"],
        "`ratio`": ["float > 0, ≤ 1", "`0.5`", "a share"],
        "`limit`": ["int > 0 or null", "`null`", "a cap"],
        "`names`": ["list of str", "`[x, y]`", "names"],
        "`settings`": ["mapping", "`{}`", "more"],
        "`section.size`": ["int > 0", "`4`", "a size"],
        "`needed`": ["str", "required", "no default"],
    }
    # In the table a pipe inside a cell is escaped, or it would split the markdown row.
    assert "| `kind` | one of a, b | `a` | which \\| one |" in table(["key", "type", "default", "meaning"],
                                                                  study_keys_rows(_Example))
