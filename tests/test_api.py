"""The Python API: the README's example runs as written, and ``import lorascope`` stays cheap."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import lorascope
from tests.conftest import REPO


@pytest.mark.slow
def test_readme_python_example_runs(glue_dir, tmp_path, monkeypatch, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "runs" / "api-demo" / "adapter" / "adapter_config.json").is_file()
    base, tuned = namespace["base"], namespace["tuned"]
    assert base.shape == tuned.shape and base.shape[:2] == (3, 48)  # tiny-llama: embeddings + 2 layers
    np.testing.assert_allclose(namespace["drift"][0], 0.0, atol=1e-6)  # LoRA leaves the embeddings alone
    assert "accuracy" in capsys.readouterr().out


def test_every_public_name_resolves_and_import_is_light():
    from lorascope import _EXPORTS

    assert sorted(lorascope.__all__) == sorted(["__version__", *_EXPORTS])
    for name in _EXPORTS:
        # Each name is the object its declared module defines, not a stand-in of the lazy loader.
        module = "lorascope" + _EXPORTS[name]
        assert getattr(lorascope, name) is getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name)
    code = ("import sys, lorascope; lorascope.TrainConfig; lorascope.DriftConfig; "
            "print(sorted(m for m in ('torch', 'transformers', 'scipy', 'datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_encode_takes_pairs_and_refuses_a_mix():
    from lorascope.errors import DataError

    states = lorascope.encode("tiny-llama", [["a man sings", "someone sings"], ["b", "c"]], max_length=16)
    assert states.shape[:2] == (3, 2) and states.dtype == np.float32
    with pytest.raises(DataError, match=r"texts\[1\]: give all single texts or all \[text_a, text_b\] pairs"):
        lorascope.encode("tiny-llama", ["a", ["b", "c"]])


def test_every_lazily_exported_name_has_its_type_stub():
    from lorascope._stubs import stubs

    found = stubs()
    assert len(found) >= 10 and any(p.parent.name == "lorascope" for p in found)
    for path, text in found.items():
        assert path.is_file() and path.read_text(encoding="utf-8") == text, (
            f"{path} is not up to date: run `python -m lorascope._stubs`")
