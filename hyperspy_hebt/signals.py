"""HyperSpy signal classes for EDS-STEM tilt series.

Validation, metadata and dask plumbing only: the numerics live in
:mod:`hyperspy_hebt.tomography`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from exspy.signals import EDSTEMSpectrum, LazyEDSTEMSpectrum
from exspy.utils import eds as eds_utils

from ._reconstruction import auto as _auto
from ._reconstruction import fused as _fused
from ._reconstruction import hebt as _hebt
from ._reconstruction import mlem as _mlem
from ._reconstruction import poisson_tv as _poisson_tv
from ._reconstruction import quantify as _quantification
from ._reconstruction import sirt as _sirt
from ._reconstruction.docstrings import shared_parameters
from ._reconstruction.options import (
    Absorption,
    Alpha,
    Backend,
    Bootstrap,
    GridOptions,
    HebtModel,
    Iterations,
    LineSource,
    Padding,
    RunOptions,
    checked_alpha,
    checked_iterations,
)
from .tilt_series import SIGNAL_TYPE, apply_tilt_angles, get_tilt_axis, rebin_keeping_tilts
from .tomography.poisson_tv import validate_tv_parameters

__all__ = ["TomographicEDSSpectrum", "LazyTomographicEDSSpectrum"]


class TomographicEDSSpectrum(EDSTEMSpectrum):
    """EDS-STEM spectrum images recorded over a tilt series.

    Navigation axes ``(x, y, tilt)`` (array shape ``(tilt, y, x, energy)``), or
    ``(x, tilt)`` for a single slice; the ``tilt`` axis holds the tilt angles
    in degrees (uniform or not). By default the specimen rotation axis is
    parallel to ``y``: each row ``y`` of every tilt is one sinogram row.

    Every exspy EDS-TEM method works unchanged (``add_elements``,
    ``add_lines``, ``get_lines_intensity``, ``plot`` ...). Build one with
    :func:`hyperspy_hebt.stack_tilt_series`, ``set_signal_type("EDS_TEM_Tomography")``
    or ``hs.load`` of a saved series.

    Examples
    --------
    A signal becomes one by its signal type (``hs.load`` of a saved series does it too):

    >>> s = hs.signals.Signal1D(np.zeros((3, 4, 8)))  # 3 tilts of 4 pixels, 8 channels
    >>> s.set_signal_type("EDS_TEM_Tomography")
    >>> type(s).__name__
    'TomographicEDSSpectrum'
    >>> s.set_tilt_angles([-30, 0, 30])
    >>> s.tilt_angles
    array([-30.,   0.,  30.])
    """

    _signal_type = SIGNAL_TYPE
    _alias_signal_types = ["EDS_STEM_Tomography", "EDS TEM tomography"]

    # exspy's EDS-TEM methods below test ``signal_type == "EDS_TEM"``; these
    # overrides keep them working for our type.

    def _set_default_param(self):
        super()._set_default_param()
        self.metadata.Signal.signal_type = self._signal_type

    def _get_line_energy(self, Xray_line, FWHM_MnKa=None):
        if FWHM_MnKa == "auto":
            FWHM_MnKa = self.metadata.Acquisition_instrument.TEM.Detector.EDS.energy_resolution_MnKa
        return super()._get_line_energy(Xray_line, FWHM_MnKa=FWHM_MnKa)

    def get_take_off_angle(self) -> float | np.ndarray:
        """X-ray take-off angle in degrees.

        For a tilt series the stage tilt is the ``tilt`` axis, so the result is
        an array with one angle per tilt (computed with exspy's formula from
        the detector's azimuth and elevation and ``Stage.tilt_beta``);
        ``Stage.tilt_alpha`` in metadata is ignored. Without a tilt axis, the
        scalar from ``Stage.tilt_alpha`` is returned as exspy does.

        Returns
        -------
        float or numpy.ndarray
            Degrees: one angle per tilt for a tilt series, else exspy's scalar.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> series.get_take_off_angle()[:3]  # degrees, one per tilt: -75, -70, -65
        array([-40., -35., -30.])
        """
        tem = self.metadata.Acquisition_instrument.TEM
        azimuth = tem.get_item("Detector.EDS.azimuth_angle", None)
        elevation = tem.get_item("Detector.EDS.elevation_angle", None)
        beta = tem.get_item("Stage.tilt_beta", 0.0)
        if get_tilt_axis(self) is None:
            alpha = tem.get_item("Stage.tilt_alpha", None)
            return eds_utils.take_off_angle(alpha, azimuth, elevation, beta)
        return np.array(
            [eds_utils.take_off_angle(a, azimuth, elevation, beta) for a in self.tilt_angles]
        )

    def rebin(self, new_shape=None, scale=None, crop=True, dtype=None, out=None):
        """HyperSpy's ``rebin``, keeping a non-uniform tilt axis (HyperSpy refuses it)."""
        return rebin_keeping_tilts(
            self, lambda target, **kw: super().rebin(**kw),
            new_shape=new_shape, scale=scale, crop=crop, dtype=dtype, out=out)

    rebin.__doc__ = EDSTEMSpectrum.rebin.__doc__

    @property
    def tilt_angles(self) -> np.ndarray:
        """Tilt angles in degrees, one per tilt, from the ``tilt`` navigation axis (read-only).

        Examples
        --------
        >>> s = hs.signals.Signal1D(np.zeros((3, 4, 8)))
        >>> s.set_signal_type("EDS_TEM_Tomography")
        >>> s.set_tilt_angles([-30, 0, 30])
        >>> s.tilt_angles
        array([-30.,   0.,  30.])
        """
        axis = get_tilt_axis(self)
        if axis is None:
            raise AttributeError(
                "This signal has no navigation axis named 'tilt'. Set the angles with "
                "set_tilt_angles(angles) or build the series with stack_tilt_series."
            )
        angles = np.array(axis.axis, dtype=float)
        angles.setflags(write=False)
        return angles

    def set_tilt_angles(self, tilt_angles: Sequence[float]) -> None:
        """Set the tilt angle of every tilt, in degrees (in place).

        Parameters
        ----------
        tilt_angles : sequence of float
            One angle per tilt in degrees, strictly increasing along the tilt
            axis, finite, with ``|angle| < 90``. If no navigation axis is named
            ``tilt`` yet, the slowest navigation axis becomes it.

        Raises
        ------
        ValueError
            Not one finite angle per tilt, angles repeated, at or beyond 90 degrees, or not
            strictly increasing along the tilt axis.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> series.set_tilt_angles(np.linspace(-60, 60, 31))
        >>> series.tilt_angles[:3]
        array([-60., -56., -52.])
        """
        apply_tilt_angles(self, tilt_angles)

    @shared_parameters
    def reconstruct_sirt(
        self,
        iterations: Iterations = 50,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        relaxation: float = 1.0,
        positivity: bool = True,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        normalise_tilts: bool = False,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        backend: Backend = "cpu",
        thickness_nm: float | None = None,
        absorption_correction: bool | str = False,
        density: float | None = None,
        detectors: Sequence | None = None,
        detector_efficiency=1.0,
        uncertainty: int = 0,
        random_state: int | None = None,
    ) -> list:
        """Reconstruct each X-ray line's map in 3D by SIRT (paper Eq. 10-11).

        Parameters
        ----------
        iterations : int or "auto"
            SIRT iterations. Noisy data semi-converge: quality rises, then falls.
            ``"auto"`` picks, for each line, the count that best predicts held-out
            tilts (:meth:`cross_validate` over 20-500 iterations on 16 slices) and
            records the scores in ``metadata.Reconstruction.CrossValidation``.
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
        <relaxation>
        <positivity>
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <normalise_tilts>
        <padding_px>
        <invalid_pixels>
        <backend>
        <thickness_nm>
        <absorption_correction>
        <density>
        <detectors>
        <detector_efficiency>
            Here only for ``absorption_correction``'s quantification.
        <uncertainty>
        <random_state>

        Returns
        -------
        list of Signal2D
            LazySignal2D when the series or any given intensity map is lazy.
            One stack per line in the order of the lines: navigation axis = the
            rotation axis (``y``), signal axes ``x`` and ``z`` (``z`` centred on
            0, calibrated like ``x``). Each holds this signal's metadata, its line
            in ``Sample.elements``/``Sample.xray_lines``, and a ``Reconstruction``
            node with every parameter used. Values are line intensity per voxel
            (counts per pixel path length), not yet compositions.

        Raises
        ------
        ValueError
            Before anything is read: a bad keyword (``iterations``, ``relaxation``,
            ``padding_px``, ``slices_per_block``, ``backend``, ``thickness_nm``,
            ``invalid_pixels``, ``integration_windows``), or a line name exspy does not know.
            On the series: a single tilt, tilts spanning under 5 degrees (radians read as
            degrees), a tilt at which every map is zero, maps negative beyond what counting
            noise explains, complex or boolean data, or a grid whose reconstruction would not
            fit in the available memory. Each message names the argument or the line and what
            was expected.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> reconstructions = series.reconstruct_sirt(iterations=20, show_progressbar=False)
        >>> reconstructions[0]
        <Signal2D, title: SIRT reconstruction of Ag_La, dimensions: (2|24, 24)>
        >>> reconstructions[0].metadata.Reconstruction.iterations
        20
        """
        source = LineSource(xray_lines, intensities, integration_windows, background_windows,
                            normalise_tilts)
        grid = GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                           thickness_nm)
        run = RunOptions(relaxation, positivity, show_progressbar, slices_per_block, backend,
                         Bootstrap.of(uncertainty, random_state))
        absorption = Absorption(absorption_correction, density, detectors)
        count = checked_iterations(iterations, run.relaxation)
        if isinstance(count, str):  # "auto"
            _no_auto_absorption(absorption)
            _no_auto_normalisation(normalise_tilts)
            return _auto.auto_sirt(self, source, grid, run)
        return _sirt.reconstruct_sirt(self, count, source, grid, run, absorption,
                                      detector_efficiency)

    @shared_parameters
    def reconstruct_mlem(
        self,
        iterations: Iterations = 20,
        subsets: int = 1,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        normalise_tilts: bool = False,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        thickness_nm: float | None = None,
        uncertainty: int = 0,
        random_state: int | None = None,
        backend: Backend = "cpu",
        absorption_correction: bool | str = False,
        density: float | None = None,
        detectors: Sequence | None = None,
        detector_efficiency=1.0,
    ) -> list:
        """Reconstruct each X-ray line's map in 3D by ML-EM (Poisson likelihood).

        EDS maps are counts, a few per pixel: ML-EM fits them as Poisson data where
        SIRT fits them by least squares (:mod:`hyperspy_hebt.tomography.mlem`). Every
        voxel stays positive and the counts are kept (:meth:`reconstruct_poisson_tv` adds
        total variation).

        Parameters
        ----------
        iterations : int or "auto"
            Full passes over the tilts. Noisy data semi-converge, as with SIRT: quality
            rises, then falls. ``"auto"`` picks, for each line, the count that best
            predicts held-out tilts (ML-EM over 5-200 iterations on 16 slices, Poisson
            deviance) and records the scores in ``metadata.Reconstruction.CrossValidation``.
        subsets : int
            Ordered subsets (OS-EM): the tilts split into this many interleaved groups,
            updated in turn; about ``subsets`` times fewer iterations for the same
            result early on, without ML-EM's guarantee that every iteration raises the
            likelihood. 1 (default): ML-EM.
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <normalise_tilts>
        <padding_px>
        <invalid_pixels>
        <thickness_nm>
        <uncertainty>
            The repeats are Poisson counts of the fitted projections (the model ML-EM
            fits): maps without background subtraction. Not with
            ``absorption_correction`` yet.
        <random_state>
        <backend>
        <absorption_correction>
            Here the ray factors are also the likelihood's ray weights: the likelihood of
            the corrected maps is then the attenuated model's own. Needs a number of
            iterations.
        <density>
        <detectors>
        <detector_efficiency>
            Here only for ``absorption_correction``'s quantification.

        Returns
        -------
        list of Signal2D
            As :meth:`reconstruct_sirt` (``Reconstruction.algorithm`` "ML-EM";
            :meth:`quantify_cross_section` uses ``f_A`` as for SIRT).

        Raises
        ------
        ValueError
            Maps with negative counts (background-subtracted maps can dip below 0:
            use SIRT for them), or what :meth:`reconstruct_sirt` refuses.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> reconstructions = series.reconstruct_mlem(iterations=10, show_progressbar=False)
        >>> reconstructions[0]
        <Signal2D, title: ML-EM reconstruction of Ag_La, dimensions: (2|24, 24)>
        """
        source = LineSource(xray_lines, intensities, integration_windows, background_windows,
                            normalise_tilts)
        grid = GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                           thickness_nm)
        run = RunOptions(1.0, True, show_progressbar, slices_per_block, backend,
                         Bootstrap.of(uncertainty, random_state))
        count = checked_iterations(iterations)
        absorption = Absorption(absorption_correction, density, detectors)
        _poisson_absorption(absorption, count, run)
        return _mlem.reconstruct_mlem(self, count, subsets, source, grid, run, absorption,
                                      detector_efficiency)

    @shared_parameters
    def reconstruct_poisson_tv(
        self,
        iterations: int = 300,
        tv_weight: float | str = "auto",
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        normalise_tilts: bool = False,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        thickness_nm: float | None = None,
        uncertainty: int = 0,
        random_state: int | None = None,
        joint_tv: bool = False,
        backend: Backend = "cpu",
        absorption_correction: bool | str = False,
        density: float | None = None,
        detectors: Sequence | None = None,
        detector_efficiency=1.0,
    ) -> list:
        """Reconstruct each line by Poisson likelihood + total variation (low dose).

        Minimises the Poisson negative log-likelihood of the line map plus the total
        variation of each slice, with the voxels >= 0
        (:mod:`hyperspy_hebt.tomography.poisson_tv`: preconditioned PDHG). Edges stay
        sharp and flat regions lose their noise: at low dose on a piecewise-constant
        particle it is the best estimate here (tested: half the RMSE of SIRT and ML-EM on
        the paper's phantom at a few counts per pixel). With ``joint_tv`` the lines share
        one total variation (vectorial TV): an element with few counts borrows the edges
        of the others. Part of issue 16; not yet there: total variation across slices.

        Parameters
        ----------
        iterations : int
            PDHG iterations: enough to converge (a few hundred), not a regulariser as
            in SIRT.
        tv_weight : float or "auto"
            Weight of the total variation per tilt (0: the plain Poisson maximum
            likelihood, which overfits the noise). It does not depend on the dose. "auto"
            (default) picks, for each line, the weight among 0.003-1 whose
            reconstruction best predicts held-out tilts (Poisson deviance, 16 slices),
            recorded in ``metadata.Reconstruction.CrossValidation``: 6 weights x 4
            folds, each ``iterations`` long on 16 slices, before the reconstruction.
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <normalise_tilts>
        <padding_px>
        <invalid_pixels>
        <thickness_nm>
        <uncertainty>
            The repeats are Poisson counts of the fitted projections: maps without
            background subtraction. Each repeat is reconstructed at the chosen weight.
            With ``joint_tv`` the lines' noise is correlated through the shared term: the
            bootstrap also gives every pair of lines' per-voxel covariance
            (``metadata.Signal.Noise_properties.Covariance.<other line>`` on the pair's
            first line), which :meth:`quantify_cross_section` propagates with them.
        <random_state>
        joint_tv : bool
            False (default): each line's own total variation, lines reconstructed one by
            one. True: one joint total variation over the lines (``sqrt`` of the sum of
            the lines' squared gradients, each line's slice in units of its mean
            counts), the lines reconstructed together (lazy: one dask graph for all of
            them); ``tv_weight="auto"`` then picks one weight for every line, scored on
            the held-out deviance summed over the lines. Needs two or more lines.
            ``Reconstruction.algorithm`` is then "Joint Poisson-TV" and
            ``Reconstruction.joint_lines`` names the lines.
        <backend>
        <absorption_correction>
            Here the ray factors are also the likelihood's ray weights: the likelihood of
            the corrected maps is then the attenuated model's own. Needs ``tv_weight`` as
            a number (it does not depend on the dose: choose it with "auto" on the
            uncorrected maps); not with ``uncertainty`` yet.
        <density>
        <detectors>
        <detector_efficiency>
            Here only for ``absorption_correction``'s quantification.

        Returns
        -------
        list of Signal2D
            As :meth:`reconstruct_sirt` (``Reconstruction.algorithm`` "Poisson-TV";
            :meth:`quantify_cross_section` uses ``f_A`` as for SIRT).

        Raises
        ------
        ValueError
            Maps with negative counts (use SIRT for background-subtracted maps), a bad
            ``tv_weight`` or ``iterations``, ``joint_tv`` with one line, or what
            :meth:`reconstruct_sirt` refuses.
        TypeError
            ``joint_tv`` not a bool.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> reconstructions = series.reconstruct_poisson_tv(iterations=50, tv_weight=0.03,
        ...                                                  show_progressbar=False)
        >>> reconstructions[0].metadata.Reconstruction.algorithm
        'Poisson-TV'
        """
        source = LineSource(xray_lines, intensities, integration_windows, background_windows,
                            normalise_tilts)
        grid = GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                           thickness_nm)
        run = RunOptions(1.0, True, show_progressbar, slices_per_block, backend,
                         Bootstrap.of(uncertainty, random_state))
        if not (isinstance(tv_weight, str) and tv_weight == "auto"):
            validate_tv_parameters(iterations, tv_weight)
        if not isinstance(joint_tv, (bool, np.bool_)):
            raise TypeError(f"joint_tv must be True or False, got {joint_tv!r}.")
        absorption = Absorption(absorption_correction, density, detectors)
        _poisson_absorption(absorption, tv_weight, run)
        return _poisson_tv.reconstruct_poisson_tv(self, iterations, tv_weight, source, grid,
                                                  run, bool(joint_tv), absorption,
                                                  detector_efficiency)

    @shared_parameters
    def reconstruct_fused(
        self,
        adf,
        iterations: int = 300,
        tv_weight: float | str = "auto",
        gamma: float | str = 1.0,
        adf_weight: float = 1.0,
        joint_tv: bool = True,
        adf_offset: bool = False,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        normalise_tilts: bool = False,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        thickness_nm: float | None = None,
        uncertainty: int = 0,
        random_state: int | None = None,
        absorption_correction: bool | str = False,
        density: float | None = None,
        detectors: Sequence | None = None,
        detector_efficiency=1.0,
        backend: Backend = "cpu",
    ) -> list:
        """Fused EDS + ADF reconstruction: Poisson counts, ADF as a power of the lines, TV.

        After Schwartz et al. (Nature Communications 15, 3555, 2024): the line volumes
        ``x_c`` minimise the Poisson negative log-likelihood of every line's counts, plus
        ``P/2`` times the squared distance of the ADF from the projection of
        ``sum_c q_c x_c^gamma``, plus the total variation of each slice (joint over the
        lines by default), with ``x >= 0``
        (:mod:`hyperspy_hebt.tomography.fused`: nonlinear preconditioned PDHG). Unlike
        HEBT the ADF model may be a power (``gamma`` > 1) and the EDS term is the counts'
        own likelihood. The steps (:mod:`hyperspy_hebt._reconstruction.fused`):

        1. Joint Poisson + TV of the EDS alone on 16 slices.
        2. The ADF regressed on the projections of powers of those volumes: ``gamma``
           (given, or the best R^2 of 1, 1.2, ..., 2 with ``"fit"``), every line's
           ``q_c``, and the residual variance, whose inverse times ``adf_weight`` is
           ``P``. The R^2 per ``gamma`` (``Reconstruction.Diagnostics``) tells which model
           the data support; below 0.95 a warning, below 0.85 the verdict "violated".
        3. With ``tv_weight="auto"``: the weight, on held-out tilts (Poisson deviance of the
           EDS; the held-out tilts' ADF is left out of training too).
        4. Every slice, in blocks, lazy for a lazy series.

        Parameters
        ----------
        <adf>
        iterations : int
            Iterations of the solver (a few hundred to converge; also those of step 1).
        tv_weight : float or "auto"
            Weight of the total variation per tilt, in the units of
            :meth:`reconstruct_poisson_tv`'s. "auto" (default): among 0.003-1, the best on
            held-out tilts (6 weights x 4 folds on 16 slices, after the same for the EDS
            alone in step 1).
        gamma : float or "fit"
            Power of the ADF model (>= 1). 1 (default): linear, HEBT's model. "fit": the
            best R^2 among 1-2 in steps of 0.2. The fit is made on reconstructions whose
            noise and blur bias it towards 1, and with two phases any power fits as well
            as the linear model: read the R^2 table before trusting a fitted power.
        adf_weight : float
            Multiplies the ADF's precision (> 0; 1: the inverse of the model fit's
            residual variance, which holds the ADF's noise and the model's error).
        joint_tv : bool
            One total variation joint over the lines (default), or each line's own.
        adf_offset : bool
            Fit an ADF offset (a dark level, either sign) with the model in step 2,
            ``a = W sum_c q_c x_c^gamma + b``, and use ``a - b`` from then on (recorded as
            ``Reconstruction.adf_offset``). False (default): the ADF must have none.
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
            Here it filters the EDS maps only: the ADF is the low-noise modality.
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <normalise_tilts>
            Here the EDS maps only: the ADF is not shadowed.
        <padding_px>
        <invalid_pixels>
            Here they are left out of the EDS terms and the ADF term; saturated, clipped
            and hot ADF pixels are left out of the ADF term as well.
        <thickness_nm>
        <uncertainty>
            The repeats: Poisson counts of the fitted projections for the lines (maps
            without background subtraction or filter) and, for the ADF, the fitted model
            plus Gaussian noise of the model fit's residual variance. The lines share the
            ADF term, so every pair's covariance is kept too
            (``Noise_properties.Covariance``) and :meth:`quantify_cross_section`
            propagates it. Not with ``absorption_correction`` yet.
        <random_state>
        <absorption_correction>
            Here the EDS lines are corrected (the ray factors also weigh their
            likelihood, which is then the attenuated model's own) and the ADF is not
            (electrons); the ADF model is fitted on the corrected lines. Needs
            ``tv_weight`` as a number.
        <density>
        <detectors>
        <detector_efficiency>
            Here only for ``absorption_correction``'s quantification.
        <backend>

        Returns
        -------
        list of Signal2D
            One stack per line, laid out as :meth:`reconstruct_sirt`'s, holding the line's
            counts per voxel (so :meth:`quantify_cross_section` uses ``f_A``, as for SIRT).
            ``metadata.Reconstruction`` records ``algorithm="Fused"``, ``gamma``, the
            coefficients, the ADF's precision, the weight and ``Diagnostics``. Lazy stacks
            share one graph: compute them together.

        Raises
        ------
        ValueError
            No ADF, maps with negative counts, every ADF pixel invalid, a bad ``gamma``,
            ``adf_weight``, ``tv_weight`` or ``iterations``, or what
            :meth:`reconstruct_sirt` refuses.
        TypeError
            ``joint_tv`` or ``adf_offset`` not a bool.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> reconstructions = series.reconstruct_fused(adf, iterations=50, tv_weight=0.03,
        ...                                             show_progressbar=False)
        >>> reconstructions[1]
        <Signal2D, title: Fused reconstruction of Au_Ma, dimensions: (2|24, 24)>
        """
        source = LineSource(xray_lines, intensities, integration_windows, background_windows,
                            normalise_tilts)
        grid = GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                           thickness_nm)
        run = RunOptions(1.0, True, show_progressbar, slices_per_block, backend,
                         Bootstrap.of(uncertainty, random_state))
        for name, value in (("joint_tv", joint_tv), ("adf_offset", adf_offset)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {value!r}.")
        absorption = Absorption(absorption_correction, density, detectors)
        _poisson_absorption(absorption, tv_weight, run)
        return _fused.reconstruct_fused(self, adf, iterations, tv_weight, gamma, adf_weight,
                                        bool(joint_tv), source, grid, run, bool(adf_offset),
                                        absorption, detector_efficiency)

    @shared_parameters
    def reconstruct_hebt(
        self,
        adf,
        alpha: Alpha = 0.8,
        iterations: Iterations = 200,
        response_ratios: dict | None = None,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        relaxation: float = 1.0,
        positivity: bool = True,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        exclude_clipped: bool = True,
        adf_offset: bool = False,
        unlisted_mass: bool = False,
        ratio_floor: float | None = None,
        normalise_tilts: bool = False,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        detector_efficiency=1.0,
        backend: Backend = "cpu",
        thickness_nm: float | None = None,
        absorption_correction: bool | str = False,
        density: float | None = None,
        detectors: Sequence | None = None,
        uncertainty: int = 0,
        random_state: int | None = None,
    ) -> list:
        """HAADF-EDS bimodal tomography (HEBT, paper Eq. 15-17; Zhong et al. 2017).

        Reconstructs every element jointly from its EDS map and the ADF signal,
        which is modelled as ``I_H = sum_A r_A I_A``: the low-noise ADF term
        sharpens each element's map while the EDS terms keep them apart.

        Parameters
        ----------
        <adf>
        alpha : float or "auto"
            Weight of the ADF term in [0, 1). 0 is EDS-only SIRT of the
            ratio-scaled maps; the paper finds the best alpha in 0.6-0.9.
            ``"auto"`` (with ``iterations`` a number or "auto") picks the setting
            that best predicts held-out tilts (:meth:`cross_validate` on 16
            slices: alpha 0.5, 0.7, 0.8, 0.9 and 20-500 iterations) among HEBT and
            **plain SIRT**. HEBT's model is checked first; a "violated" verdict
            (a zero ratio, R^2 below 0.85, a saturated ADF left in) makes it
            SIRT. When SIRT is chosen the result is SIRT's maps
            (``algorithm="SIRT"``, quantified with ``f_A``), never HEBT at alpha 0,
            whose maps are scaled by ratios the check distrusts. What was chosen
            and why: ``metadata.Reconstruction.AutomaticChoice`` (and a logged
            warning when it is SIRT); the scores:
            ``metadata.Reconstruction.CrossValidation``.
        iterations : int or "auto"
            Joint SIRT iterations (HEBT converges more slowly than EDS SIRT as
            alpha grows: the EDS terms are weighted by 1 - alpha).
        <response_ratios>
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
            Here it filters the EDS maps only: the ADF is the low-noise modality.
        <relaxation>
        <positivity>
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <exclude_clipped>
        <adf_offset>
        <unlisted_mass>
        <ratio_floor>
        <normalise_tilts>
            Here the EDS maps only: the ADF is not shadowed.
        <padding_px>
            Here ``"auto"`` looks at the EDS maps, which an ADF dark level cannot fool.
        <invalid_pixels>
            Here they are left out of the ratio fit, the EDS terms and the ADF term.
        <detector_efficiency>
        <backend>
        <thickness_nm>
            Every volume, the unlisted-mass one included, is held within the slab.
        <absorption_correction>
            Here the EDS maps are corrected and the ADF (electrons) is not; the
            response ratios are fitted again on every pass.
        <density>
        <detectors>
        <uncertainty>
            Here the lines are repeated together with the ADF (Gaussian about the HEBT
            fit's ``W sum_A Xb_A``, of its residual there, slice by slice) and each repeat
            is reconstructed by HEBT at the same alpha, iterations and response ratios (the
            ratios' own noise is not included). The lines share the ADF term, so the
            per-voxel covariance of every pair is kept too
            (``Noise_properties.Covariance``), for :meth:`quantify_cross_section`. Not
            with ``unlisted_mass``. With alpha or iterations "auto", the chosen method's.
        <random_state>

        Returns
        -------
        list of Signal2D
            LazySignal2D when the series, the ADF or any given intensity map is lazy.
            One stack per line, laid out as :meth:`reconstruct_sirt`'s (then the
            unlisted-mass volume with ``unlisted_mass``), holding
            ``Xb_A = z_A C_A rho`` on the ADF scale. ``metadata.Reconstruction``
            records ``algorithm="HEBT"``, ``alpha``, the response ratios, their
            source and R^2, so :meth:`quantify_cross_section` uses ``z_A``. The
            lazy stacks share one graph: compute them together
            (``dask.compute(*[r.data for r in rec])``) to run HEBT once.

        Raises
        ------
        ValueError
            No usable ADF (a tilt without contrast, every pixel invalid, scan axes calibrated to
            another pixel size than the series'), a bad ``alpha``, ``response_ratios`` or
            ``ratio_floor``, ``uncertainty`` with ``unlisted_mass=True``, ``"auto"`` with the
            absorption correction or tilt normalisation, or what :meth:`reconstruct_sirt`
            refuses.
        TypeError
            ``exclude_clipped``, ``adf_offset`` or ``unlisted_mass`` not a bool.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> reconstructions = series.reconstruct_hebt(adf, alpha=0.8, iterations=20,
        ...                                           show_progressbar=False)
        >>> record = reconstructions[0].metadata.Reconstruction
        >>> record.algorithm, round(record.response_ratio_r_squared, 2)
        ('HEBT', 1.0)
        """
        model = HebtModel(response_ratios, exclude_clipped, adf_offset, unlisted_mass,
                          ratio_floor, detector_efficiency)
        source = LineSource(xray_lines, intensities, integration_windows, background_windows,
                            normalise_tilts)
        grid = GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                           thickness_nm)
        run = RunOptions(relaxation, positivity, show_progressbar, slices_per_block, backend,
                         Bootstrap.of(uncertainty, random_state))
        if run.bootstrap is not None and unlisted_mass:
            raise ValueError("uncertainty with unlisted_mass=True is not available: the "
                             "unlisted-mass volume is not repeated. Pass one or the other.")
        absorption = Absorption(absorption_correction, density, detectors)
        weight, count = checked_alpha(alpha), checked_iterations(iterations, run.relaxation)
        if isinstance(weight, str) or isinstance(count, str):  # "auto"
            _no_auto_absorption(absorption)
            _no_auto_normalisation(normalise_tilts)
            return _auto.auto_hebt(self, adf, weight, count, model, source, grid, run)
        return _hebt.reconstruct_hebt(self, adf, weight, count, model, source, grid, run,
                                      absorption)

    @shared_parameters
    def cross_validate(
        self,
        adf=None,
        methods: Sequence[str] = ("sirt", "hebt"),
        iterations: Sequence[int] = (20, 50, 100, 200, 500),
        alphas: Sequence[float] = (0.0, 0.5, 0.7, 0.8, 0.9),
        holdout: int = 4,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        score: str = "poisson",
        slices: int | Sequence[int] | None = None,
        rotation_axis: str = "y",
        exclude_clipped: bool = True,
        adf_offset: bool = False,
        unlisted_mass: bool = False,
        ratio_floor: float | None = None,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        response_ratios: str | None = None,
        detector_efficiency=1.0,
        backend: Backend = "cpu",
        thickness_nm: float | None = None,
    ):
        """Score methods, iteration counts and alphas on held-out tilts.

        The tilts are split into ``holdout`` folds (fold f holds out tilts f,
        f + holdout, ...); each fold's other tilts are reconstructed, projected
        onto the held-out ones and compared with the measured line maps by a
        Poisson deviance per pixel (about 1 for a perfect prediction of counts
        of a few or more; lower is better). The paper chose n and alpha against a
        known phantom; this needs none. On data that break HEBT's model (a
        saturated ADF, unlisted mass), HEBT predicts the held-out EDS maps worse
        and SIRT wins.

        Parameters
        ----------
        adf : Signal2D, optional
            The ADF series, needed for ``"hebt"``.
        methods : sequence of {"sirt", "hebt", "mlem"}
            (Poisson + TV is scored by ``reconstruct_poisson_tv(tv_weight="auto")``.)
        iterations : sequence of int
        alphas : sequence of float
            HEBT weights to try.
        holdout : int
            Number of folds (2 to half the number of tilts).
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
            Here it filters the training tilts of each fold only; the scores use
            the unfiltered maps.
        score : {"poisson", "mse"}
            ``"mse"`` for maps that are not counts (background-subtracted).
        slices : int or sequence of int, optional
            Use this many evenly spaced slices (or these indices) to save time.
        <rotation_axis>
        <exclude_clipped>
        <adf_offset>
        <unlisted_mass>
        <ratio_floor>
        <response_ratios>
            Here only None or ``"physics"``: each fold fits its own ratios.
        <padding_px>
        <invalid_pixels>
            Here they are left out of the training and of the scores.
        <detector_efficiency>
        <backend>
            Here resolved now: the folds run in this process.
        <thickness_nm>
            The folds are reconstructed within it.

        Returns
        -------
        hyperspy_hebt.cross_validation.CrossValidation
            ``rows`` (every score), ``best_per_line``, ``best`` (summed over lines),
            ``setting(line)``, ``plot()``.

        Raises
        ------
        ValueError
            An unknown method or score, ``slices`` that are not a positive count or valid
            indices, ``response_ratios`` other than None or ``"physics"`` (the ratios are
            fitted on each fold), HEBT or fused without the ADF, a TV method without
            ``tv_weights``, or what :meth:`reconstruct_sirt` refuses.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> scores = series.cross_validate(adf, iterations=(10, 20), alphas=(0.8,), slices=1)
        >>> sorted(scores.setting())
        ['alpha', 'iterations', 'method', 'tv_weight']
        """
        _auto.check_fold_ratios(response_ratios)
        return _auto.cross_validate(
            self, adf, methods=methods, iterations=iterations, alphas=alphas,
            holdout=holdout, score=score, slices=slices,
            model=HebtModel(response_ratios, exclude_clipped, adf_offset, unlisted_mass,
                            ratio_floor, detector_efficiency),
            source=LineSource(xray_lines, intensities, integration_windows,
                              background_windows),
            grid=GridOptions(rotation_axis, gaussian_sigma, padding_px, invalid_pixels,
                             thickness_nm),
            run=RunOptions(backend=backend))

    def fit_line_intensities(
        self,
        xray_lines: Sequence[str] | None = None,
        background_order: int = 2,
        window_fwhm: float = 3.0,
        check: bool = True,
    ) -> list:
        """Line-intensity maps by a linear fit of every spectrum (overlapping lines kept apart).

        Pass them as ``intensities=`` to the reconstructions.

        See :func:`hyperspy_hebt.line_fitting.fit_line_intensities` for the model and
        the parameters.

        Parameters
        ----------
        xray_lines : list of str, optional
            Lines to return, e.g. ``["Ag_La", "Au_Ma"]``; default as ``reconstruct_sirt``. Every
            family of every listed element is modelled, returned or not.
        background_order : int
            Order of the background polynomial in each energy cluster (>= 0).
        window_fwhm : float
            Half-width of the fitted range around each modelled line, in FWHM (> 0).
        check : bool
            Fit the sum spectrum too and report lines or shapes the model misses (a lazy
            series is then read once, now); False keeps a lazy series fully lazy.

        Returns
        -------
        list of BaseSignal
            One map per line, shaped like the navigation, lazy for a lazy series, with a
            ``LineFit`` metadata node (the model and the check).

        Raises
        ------
        ValueError
            As :func:`hyperspy_hebt.line_fitting.fit_line_intensities`: bad
            ``background_order`` or ``window_fwhm``, two lines of one family, an energy axis
            that is not uniform, or no energy resolution in the metadata.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> maps = series.fit_line_intensities()
        >>> maps[0].metadata.General.title
        'Fitted intensity of Ag_La (Synthetic EDS tilt series)'
        >>> maps[0].metadata.LineFit.check.verdict
        'consistent'
        """
        from .line_fitting import fit_line_intensities

        return fit_line_intensities(self, xray_lines=xray_lines,
                                    background_order=background_order,
                                    window_fwhm=window_fwhm, check=check)

    @shared_parameters
    def check_hebt_model(
        self,
        adf,
        xray_lines: Sequence[str] | None = None,
        intensities: Sequence | None = None,
        integration_windows: float | Sequence = 2.0,
        background_windows: Sequence | str | None = None,
        gaussian_sigma: float | dict | None = None,
        response_ratios: dict | None = None,
        rotation_axis: str = "y",
        exclude_clipped: bool = False,
        adf_offset: bool = False,
        invalid_pixels="auto",
        detector_efficiency=1.0,
    ) -> dict:
        """Is HEBT's model valid for these data? (paper section 2.2, "two conditions").

        HEBT assumes ``I_H = sum_A r_A I_A``. This fits the ratios (or takes
        yours) on the same maps :meth:`reconstruct_hebt` would use and reports
        what breaks the assumption: a low R^2, a ratio that is zero or far below
        the others, ADF pixels piled up at the top (saturation) or at a non-zero
        floor (clipping), a residual that grows across the tilts. Arguments are
        those of :meth:`reconstruct_hebt`; ``exclude_clipped`` and ``adf_offset``
        (off by default here) check the model with those remedies applied;
        ``invalid_pixels`` as for :meth:`reconstruct_sirt` (left out of the fit).
        The fitted ratios are compared with the cross sections' pattern (Eq. 16,
        with ``detector_efficiency``): ``physics_ratio_spread`` is the largest
        over the smallest ``r_A / (z_A / f_A)``.
        Reads the data (lazy series: once).

        Parameters
        ----------
        <adf>
        <xray_lines>
        <intensities>
        <integration_windows>
        <background_windows>
        <gaussian_sigma>
            Here it filters the EDS maps, as HEBT would use them.
        <response_ratios>
        <rotation_axis>
        <exclude_clipped>
            Off by default here: the check then sees the clipped pixels.
        <adf_offset>
        <invalid_pixels>
            Here they are left out of the fit.
        <detector_efficiency>

        Returns
        -------
        dict
            ``verdict`` ("consistent", "doubtful", "violated"), ``problems`` (plain
            words), ``response_ratios``, ``r_squared``, ``saturated_adf_fraction``,
            ``clipped_adf_fraction``, and the signals ``residual`` (``I_H - sum r_A
            I_A`` per pixel, navigation of this series) and ``residual_per_tilt``.
            :meth:`reconstruct_hebt` runs the same check and stores it in
            ``metadata.Reconstruction.Diagnostics``, with a logged warning when the
            verdict is not "consistent".

        Raises
        ------
        ValueError
            No usable ADF, or what :meth:`reconstruct_hebt` refuses for its ratio fit.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> report = series.check_hebt_model(adf)
        >>> report["verdict"], report["problems"]
        ('consistent', [])
        """
        return _hebt.check_hebt_model(
            self, adf,
            HebtModel(response_ratios, exclude_clipped, adf_offset,
                      detector_efficiency=detector_efficiency),
            LineSource(xray_lines, intensities, integration_windows, background_windows),
            GridOptions(rotation_axis, gaussian_sigma, invalid_pixels=invalid_pixels))

    @shared_parameters
    def reconstruct_adf(
        self,
        adf,
        iterations: int = 50,
        relaxation: float = 1.0,
        positivity: bool = True,
        show_progressbar: bool | None = None,
        rotation_axis: str = "y",
        slices_per_block: int = 64,
        padding_px: Padding = "auto",
        invalid_pixels="auto",
        backend: Backend = "cpu",
    ):
        """SIRT of the ADF/HAADF tilt series alone (the paper's Fig. 7).

        Uses this series' tilt angles and axes, so the volume lines up with the
        EDS reconstructions.

        Parameters
        ----------
        <adf>
        iterations : int
            SIRT iterations of the ADF series.
        <relaxation>
        <positivity>
        <show_progressbar>
        <rotation_axis>
        <slices_per_block>
        <padding_px>
            Here ``"auto"`` looks at the ADF images, so a large ADF dark level (above
            25 % of the brightest column) reads as an object wider than the scan:
            give a number then.
        <invalid_pixels>
        <backend>

        Returns
        -------
        Signal2D (LazySignal2D for a lazy ADF)
            ADF intensity per voxel; ``metadata.Reconstruction.signal == "ADF"``.

        Raises
        ------
        ValueError
            An ADF that does not match the series (tilts, scan shape or pixel size), a tilt
            without contrast, or what :meth:`reconstruct_sirt` refuses for the grid and the
            iterations.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> series.reconstruct_adf(adf, iterations=20, show_progressbar=False)
        <Signal2D, title: SIRT reconstruction of the ADF signal, dimensions: (2|24, 24)>
        """
        return _sirt.reconstruct_adf(
            self, adf, iterations,
            GridOptions(rotation_axis, padding_px=padding_px, invalid_pixels=invalid_pixels),
            RunOptions(relaxation, positivity, show_progressbar, slices_per_block, backend))

    def quantify_cross_section(
        self,
        reconstructions: Sequence,
        factors: Sequence[float] | dict | None = None,
        threshold: str | float | None = "esf",
        composition_units: str = "weight",
        detector_efficiency=1.0,
        regions=None,
        factor_uncertainty: Sequence[float] | dict | float | None = None,
    ) -> list:
        """Turn reconstructed line intensities into weight fractions (paper Eq. 12 / 18).

        ``C_A = (X_A / f_A) / sum_B (X_B / f_B)`` voxel by voxel, where ``f_A`` is
        ``sigma_ion omega p eps / M`` (Eq. 7) for SIRT reconstructions and
        ``z_A = sigma_elastic / M`` (Eq. 14) for HEBT ones (read from each
        reconstruction's ``metadata.Reconstruction.algorithm``), computed from
        first principles (:mod:`hyperspy_hebt.physics`) at this signal's beam
        energy. Fractions are in [0, 1]; exspy's ``quantification`` returns percent.

        Parameters
        ----------
        reconstructions : list of Signal2D
            Output of :meth:`reconstruct_sirt` (or ``reconstruct_hebt``), one line
            per element, all of the same tilt series.
        factors : sequence or dict, optional
            Your own ``f_A`` / ``z_A`` in barn mol/g: a sequence in the order of
            ``reconstructions`` or a dict keyed by line or element. Overrides the
            computed ones (and ``detector_efficiency``).
        threshold : "esf", float or None
            Voxels whose ``sum_B X_B / f_B`` is not above the threshold are outside
            the particle (0 for every element). ``"esf"``: edge-spread-function fit
            of particle volume vs threshold, threshold of smallest gradient (paper
            section 2.1). A number: in units of ``X / f``. None: only voxels with a
            total <= 0 are outside.
        composition_units : {"weight", "atomic"}
            Weight fractions, or atomic fractions ``(C_A/M_A) / sum_B (C_B/M_B)``.
        detector_efficiency : float, dict or callable
            EDS detector efficiency (0, 1] for SIRT factors: one number, a dict per
            line, or a function of the line energy in keV.
        regions : sequence or dict, optional
            Regions to tabulate the composition of (eager results): rules such as
            ``"inside"``, ``"Pt dominates"``, ``"not Pt dominates"``, ``"Fe > 0.3"``
            or ``{name: rule or boolean volume}`` (:mod:`hyperspy_hebt.regions`).
            The table (voxels, mean and spread per element) goes into every map's
            ``metadata.Quantification.Regions``. Lazy results compute nothing: call
            :func:`hyperspy_hebt.regions.composition_table` on them once computed.
        factor_uncertainty : float, sequence or dict, optional
            Relative standard uncertainty of the factors (0.05 = 5 %; one for all, one
            per line in order, or a dict keyed by line or element), added to the
            fractions' variance. None (default): not included, and the record says so
            (the computed factors come with no stated uncertainty).

        Returns
        -------
        list of Signal2D (LazySignal2D if any reconstruction is lazy)
            One fraction map per element, same axes as the reconstructions, with
            their metadata plus a ``Quantification`` node (method, factor and
            units, beam energy, threshold and how it was found, units, and the
            regions' table). For lazy input the ESF threshold is fitted when the
            data are computed. When the reconstructions carry a variance
            (``uncertainty=`` of the reconstruct methods), each fraction map carries
            its own in ``metadata.Signal.Noise_properties.variance``: first-order
            propagation, the lines independent (or with the covariances that joint
            reconstructions carry), conditional on the threshold (0 outside); how, in
            ``Quantification.Uncertainty``.

        Raises
        ------
        ValueError
            Reconstructions of mixed algorithms or geometries, a bad threshold,
            units, factors or ``factor_uncertainty``, ``regions`` with lazy
            reconstructions, or a variance on some reconstructions and not others.

        Examples
        --------
        >>> from hyperspy_hebt.simulation import demo_acquisition
        >>> acquisition = demo_acquisition()  # an Ag-Au particle, 24 px, 2 slices, 31 tilts
        >>> series, adf = acquisition.series, acquisition.adf
        >>> fractions = series.quantify_cross_section(
        ...     series.reconstruct_sirt(iterations=20, show_progressbar=False))
        >>> fractions[1]
        <Signal2D, title: Au weight fraction (SIRT), dimensions: (2|24, 24)>
        >>> inside = (fractions[0].data + fractions[1].data) > 0
        >>> round(float(fractions[1].data[inside].mean()), 2)  # the shell dominates the volume
        0.42
        """
        if regions is not None and any(getattr(r, "_lazy", False) for r in reconstructions):
            raise ValueError(
                "regions needs the fractions in memory and these reconstructions are lazy: "
                "compute them (hyperspy_hebt.compute_together) and call "
                "hyperspy_hebt.regions.composition_table(fractions, regions).")
        fractions = _quantification.quantify_cross_section(
            self, reconstructions, factors=factors, threshold=threshold,
            composition_units=composition_units, detector_efficiency=detector_efficiency,
            factor_uncertainty=factor_uncertainty,
        )
        if regions is not None:
            from .regions import composition_table

            table = composition_table(fractions, regions)
            for fraction in fractions:
                fraction.metadata.set_item("Quantification.Regions", table)
        return fractions


def _no_auto_absorption(absorption: Absorption) -> None:
    if absorption.correction:
        raise ValueError(
            "absorption_correction needs numbers for iterations (and alpha): the automatic "
            "choice is made on uncorrected maps. Run with 'auto' first, read the choice in "
            "metadata.Reconstruction, and pass it with absorption_correction=True.")


def _poisson_absorption(absorption: Absorption, setting, run: RunOptions) -> None:
    """The Poisson solvers' absorption correction needs a number and no bootstrap yet."""
    if not absorption.correction:
        return
    if isinstance(setting, str):
        raise ValueError(
            "absorption_correction needs numbers for iterations and tv_weight: 'auto' "
            "chooses on uncorrected maps. Run with 'auto' first, read the choice in "
            "metadata.Reconstruction, and pass it with absorption_correction=True.")
    if run.bootstrap is not None:
        raise ValueError(
            "uncertainty with absorption_correction is not available for the Poisson "
            "solvers yet (their repeats would have to be the attenuated counts): use "
            "reconstruct_sirt for both, or one at a time.")


def _no_auto_normalisation(normalise_tilts):
    if normalise_tilts:
        raise ValueError(
            "'auto' settings are chosen on the maps as given: normalise them first "
            "(hyperspy_hebt.alignment.normalise_tilt_totals) and pass them as intensities."
        )


class LazyTomographicEDSSpectrum(TomographicEDSSpectrum, LazyEDSTEMSpectrum):
    """Lazy (dask-backed) :class:`TomographicEDSSpectrum`.

    Reconstruction methods return lazy signals and compute nothing: each dask
    block holds every tilt for a run of slices.

    Examples
    --------
    >>> s = hs.signals.Signal1D(np.zeros((3, 4, 8)))
    >>> s.set_signal_type("EDS_TEM_Tomography")
    >>> type(s.as_lazy()).__name__
    'LazyTomographicEDSSpectrum'
    """
