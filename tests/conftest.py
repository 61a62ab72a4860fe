import warnings

import matplotlib
import pytest
from helpers import make_series

matplotlib.use("Agg")
warnings.filterwarnings("ignore", message=".*Importing `Lazy.*")


@pytest.fixture(autouse=True)
def _no_progressbar():
    from hyperspy.defaults_parser import preferences

    old = preferences.General.show_progressbar
    preferences.General.show_progressbar = False
    yield
    preferences.General.show_progressbar = old


@pytest.fixture
def series():
    return make_series()


@pytest.fixture
def lazy_series():
    return make_series(lazy=True)
