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


def _own_statements(function_node):
    """The statements of a function, not of the functions or classes nested in it."""
    import ast

    stack = list(function_node.body)
    while stack:
        node = stack.pop()
        yield node
        stack.extend(child for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.ClassDef, ast.Lambda)))


def _sections_needed(obj) -> set:
    """Examples always; Parameters when it takes any; Returns (or Yields) when it returns a
    value; Raises when its own body raises. Read from the source, so a new ``raise`` or
    ``return`` asks for its section."""
    import ast
    import textwrap

    node = ast.parse(textwrap.dedent(inspect.getsource(obj))).body[0]
    needed = {"Examples"}
    if isinstance(node, ast.ClassDef):
        return needed
    if [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]:
        needed.add("Parameters")
    statements = list(_own_statements(node))
    if any(isinstance(s, (ast.Yield, ast.YieldFrom)) for s in statements):
        needed.add("Yields")
    elif any(isinstance(s, ast.Return) and s.value is not None
             and not (isinstance(s.value, ast.Constant) and s.value.value is None)
             for s in statements):
        needed.add("Returns")
    if any(isinstance(s, ast.Raise) for s in statements):
        needed.add("Raises")
    return needed


def _public_objects():
    """(name, object) of every public function, class and method: names without a leading
    underscore in modules without one (``_reconstruction`` is internal glue), defined there
    (not imported). Properties are attributes and are left out."""
    import importlib
    import pkgutil

    import hyperspy_hebt

    for info in pkgutil.walk_packages(hyperspy_hebt.__path__, "hyperspy_hebt."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{info.name}.{name}", obj
            if inspect.isclass(obj):
                for method_name, method in vars(obj).items():
                    if isinstance(method, (staticmethod, classmethod)):
                        method = method.__func__
                    if not method_name.startswith("_") and inspect.isfunction(method):
                        yield f"{info.name}.{name}.{method_name}", method


def test_every_public_function_has_the_sections_it_needs():
    """Issue 17: every public function and method has Parameters, Returns, Raises and an
    Examples section (the doctests run them)."""
    objects = dict(_public_objects())
    assert len(objects) > 150  # the walk found the package (176 in session 13)
    missing = {}
    for name, obj in objects.items():
        doc = "\n" + (inspect.getdoc(obj) or "") + "\n"
        lacking = sorted(section for section in _sections_needed(obj)
                         if f"\n{section}\n{'-' * len(section)}\n" not in doc)
        if lacking:
            missing[name] = lacking
    assert missing == {}, f"docstring sections missing: {missing}"


def test_the_section_check_sees_a_missing_section():
    """The check above is not vacuous: an undocumented raise is caught."""
    def undocumented(value):
        """Check a value.

        Parameters
        ----------
        value : int

        Examples
        --------
        >>> undocumented(1)
        """
        if value < 0:
            raise ValueError("negative")

    assert _sections_needed(undocumented) == {"Examples", "Parameters", "Raises"}
