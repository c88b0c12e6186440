"""The registry feeds ak.methods(), the CLI and docs/methods.md; they must not drift apart."""
from pathlib import Path

import attrkit as ak
from attrkit.registry import markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_method_table_is_generated_from_registry():
    doc = (ROOT / "docs" / "methods.md").read_text()
    assert markdown() in doc, "docs/methods.md is stale: run `python -m attrkit.registry > docs/methods.md`"


def test_every_method_states_its_needs():
    for name, spec in ak.methods().items():
        assert spec.family in {"gradient", "propagation", "cam", "game", "attention"}, name
        assert spec.layer in {"optional", "required", "never"}, name
        assert spec.summary and spec.fn.__doc__, f"{name} needs a summary and a docstring"


def test_methods_table_prints():
    text = str(ak.methods())
    assert "integrated_gradients" in text and "family" in text.splitlines()[0]
