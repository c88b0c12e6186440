"""docs/extending.md runs: every worked example is a doctest, and each new method it adds is one short file."""
import doctest
import re
from pathlib import Path

import pytest

from attrkit import registry

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
# sections whose worked example adds a method in one file of under 30 lines (issue 18)
ONE_FILE_METHODS = ("A gradient method", "A CAM")


def _sections() -> dict[str, str]:
    text = DOC.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {p.split("\n", 1)[0].split(" (")[0].strip(): p for p in parts}


def _first_block(section: str) -> list[str]:
    """The source lines of the section's first fenced block (``>>>`` and ``...`` lines)."""
    block = section.split("```python", 1)[1].split("```", 1)[0]
    return [ln for ln in block.splitlines() if ln.startswith((">>> ", "... "))]


@pytest.fixture
def clean_registry():
    """The examples register throwaway methods; whatever happens, the registry is as before afterwards."""
    registry._ensure_loaded()
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)


def test_extending_examples_run(clean_registry):
    before = set(registry._REGISTRY)
    res = doctest.testfile(str(DOC), module_relative=False, report=True,
                           optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in docs/extending.md failed (output above)"
    prompts = sum(1 for ln in DOC.read_text().splitlines() if ln.lstrip().startswith(">>> "))
    assert res.attempted >= prompts, f"only {res.attempted} of the {prompts} examples ran"
    assert set(registry._REGISTRY) == before, "an example left a method registered: unregister it in the example"


@pytest.mark.parametrize("title", ONE_FILE_METHODS)
def test_new_method_is_one_file_under_30_lines(title):
    sections = _sections()
    assert title in sections, f"docs/extending.md has no section {title!r}"
    lines = _first_block(sections[title])
    assert any("@register(" in ln for ln in lines), f"{title}: the first block registers no method"
    assert 0 < len(lines) < 30, f"{title}: the method's file has {len(lines)} lines"
    examples = sum(ln.startswith(">>> ") for ln in sections[title].splitlines())
    assert examples >= 8, f"{title}: {examples} examples (the worked example and the checks of its numbers)"
