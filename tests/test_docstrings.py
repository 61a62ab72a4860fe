"""The signal methods' docstrings: every keyword described, shared texts filled in."""

import inspect
import re

import pytest

from hyperspy_hebt.reconstruction.docstrings import PARAMETERS
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
