"""Sphinx configuration of the hyperspy-hebt documentation.

Build it with ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (the
command ``.ci/run`` runs); the gallery's examples are executed during the build.
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# numpydoc reads the docstrings our class inherits from exspy, two of which head a
# section "Return": exspy's text, not ours to mend here.
warnings.filterwarnings("ignore", message="Unknown section Return", category=UserWarning)

import hyperspy_hebt  # noqa: E402

DOCS = Path(__file__).parent

project = "hyperspy-hebt"
author = "the hyperspy-hebt developers"
copyright = "2026, the hyperspy-hebt developers"  # noqa: A001
release = hyperspy_hebt.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "sphinx_copybutton",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "examples", "demo_output"]
templates_path: list[str] = []

html_theme = "pydata_sphinx_theme"
html_title = f"hyperspy-hebt {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

# The API pages are generated from the docstrings; only the package's own members
# are listed (TomographicEDSSpectrum inherits hundreds from HyperSpy and exspy).
autosummary_generate = True
autodoc_default_options = {"members": False, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# No network during the build: intersphinx inventories would be fetched.
intersphinx_mapping: dict = {}

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    # Every example runs at a reduced size; each reports its own wall time.
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
}

# The CLI page includes the tool's own --help, written here so that it cannot fall behind.
_generated = DOCS / "_generated"
_generated.mkdir(exist_ok=True)
_help = subprocess.run([sys.executable, "-m", "hyperspy_hebt", "reconstruct", "--help"],
                       capture_output=True, text=True, check=True,
                       env={**os.environ, "COLUMNS": "90"})
(_generated / "reconstruct_help.txt").write_text(_help.stdout)

# No progress bars in the gallery's output (the examples pass show_progressbar=False
# where they can; HyperSpy's own saving reads the preference).
import hyperspy.api as hs  # noqa: E402

hs.preferences.General.show_progressbar = False

# The instrument-file examples read the real Bruker and Velox files beside the repository.
os.environ.setdefault("HYPERSPY_HEBT_INSTRUMENT_FILES",
                      str((DOCS.parent.parent / "shared" / "data" / "instrument_files").resolve()))
