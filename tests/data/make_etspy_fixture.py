"""Write ``etspy_aligned_adf.hspy``: an ADF tilt series aligned by etspy itself.

Run in two steps, because etspy (astra-toolbox, 1.2 GB with its CUDA runtime) is not a
dependency of this package::

    python tests/data/make_etspy_fixture.py simulate      # this package's venv
    /path/to/etspy-venv/bin/python tests/data/make_etspy_fixture.py align   # etspy 1.3

The first writes the drifting ADF images of the simulated particle that
``tests/test_etspy.py`` simulates again (same seed); the second builds an etspy
``TomoStack`` of them, registers it with etspy's phase correlation, adds a global
translation with ``trans_stack`` and saves it as etspy saves stacks.
"""

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RAW = HERE / "etspy_raw_adf.npz"


def simulate():
    sys.path.insert(0, str(HERE.parent))
    from test_etspy import drifting_acquisition

    acquisition = drifting_acquisition()
    np.savez(RAW, images=np.asarray(acquisition.adf.data, dtype=np.float32),
             tilts=acquisition.series.tilt_angles)


def align():
    import etspy
    from etspy.base import TomoStack

    raw = np.load(RAW)
    stack = TomoStack(raw["images"], tilts=raw["tilts"])
    aligned = stack.stack_register("PC")
    moved = aligned.trans_stack(xshift=1.0, yshift=-0.5, angle=0.0)
    moved.save(HERE / "etspy_aligned_adf.hspy", overwrite=True)
    print("etspy", etspy.__version__, "shifts", np.asarray(moved.shifts.data)[:3])


if __name__ == "__main__":
    {"simulate": simulate, "align": align}[sys.argv[1]]()
