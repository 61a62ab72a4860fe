"""The signal methods' docstrings: every keyword described, shared texts filled in."""

import inspect
import re

import pytest

from hyperspy_hebt._reconstruction.docstrings import PARAMETERS
from hyperspy_hebt.signals import TomographicEDSSpectrum

METHODS = ["reconstruct_sirt", "reconstruct_hebt", "cross_validate", "check_hebt_model",
           "reconstruct_adf", "quantify_cross_section"]


@pytest.mark.parametrize("name", METHODS)
def test_every_keyword_is_described_once(name):
    method = getattr(TomographicEDSSpectrum, name)
    doc = method.__doc__
    assert not re.search(r"^\s*<\w+>\s*$", doc, re.MULTILINE)  # every placeholder filled
    described = re.findall(r"^        (\w+) : ", doc, re.MULTILINE)
    keywords = [p for p in inspect.signature(method).parameters if p != "self"]
    missing = [k for k in keywords if k not in described]
    assert missing == [], f"{name} does not describe {missing}"
    assert len(described) == len(set(described)), f"{name} describes a keyword twice"


def test_shared_texts_are_the_same_in_every_method():
    """One text per keyword: what reconstruct_sirt says about padding_px, the others say
    too (then their own addendum)."""
    text = PARAMETERS["padding_px"][1].splitlines()[0]
    for name in ("reconstruct_sirt", "reconstruct_hebt", "cross_validate", "reconstruct_adf"):
        assert text in getattr(TomographicEDSSpectrum, name).__doc__


def _api_entries():
    """Every name the API reference page lists (docs/api.rst's autosummary entries)."""
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.rst").read_text()
    return re.findall(r"^   ((?:\w+\.)*\w+)$", text, re.MULTILINE)


#: Listed in the API reference without an Examples section yet (issue 17 asks for one on
#: every public function; this list may only shrink).
NO_EXAMPLES_YET: set = set()


def test_the_api_reference_lists_documented_objects():
    """Each entry has Parameters or is a class/property, and an Examples section unless it is
    on the shrinking list; an entry that gained one must leave the list."""
    import importlib

    import hyperspy_hebt

    entries = _api_entries()
    assert len(entries) > 50
    missing, listed_but_done = [], []
    for entry in entries:
        parts = entry.split(".")
        target = hyperspy_hebt
        for i, part in enumerate(parts):
            if not hasattr(target, part):
                target = importlib.import_module(
                    "hyperspy_hebt." + ".".join(parts[: i + 1]))
            else:
                target = getattr(target, part)
        doc = inspect.getdoc(target) or ""
        has_examples = "\nExamples\n--------\n" in doc
        if entry in NO_EXAMPLES_YET:
            if has_examples:
                listed_but_done.append(entry)
        elif not has_examples:
            missing.append(entry)
    assert missing == [], f"no Examples section: {missing}"
    assert listed_but_done == [], f"take these off NO_EXAMPLES_YET: {listed_but_done}"
    assert set(NO_EXAMPLES_YET) <= set(entries)
