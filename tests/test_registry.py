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


def test_every_option_of_every_method_is_documented_with_default_and_type():
    from attrkit.method_options import option_rows
    for name, spec in ak.methods().items():
        for row in option_rows(spec):
            assert row["meaning"], f"{name}: option {row['option']!r} has no meaning in attrkit/method_options.py"
            assert row["type"] and row["default"], (name, row)
    doc = (ROOT / "docs" / "methods.md").read_text()
    assert "| `n_samples` | `2000` | int | model evaluations per sample (not permutations" in doc


def test_methods_by_family_by_name_and_unknown_names():
    import pytest
    assert set(ak.methods("game")) >= {"kernel_shap", "lime"}
    one = ak.methods("kernel_shap")
    assert list(one) == ["kernel_shap"]
    text = str(one)
    assert "n_samples" in text and "2000" in text and "model evaluations" in text and "Captum" in text
    with pytest.raises(ValueError, match=r"Did you mean gradient.*Families: attention, cam, game, gradient, propagation"):
        ak.methods("gradients")
    with pytest.raises(TypeError, match="family or method name"):
        ak.methods(3)
