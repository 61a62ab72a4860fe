"""The glue between the signal methods and the array kernels (internal: no stable API).

One parameter's way, ``s.reconstruct_sirt(relaxation=1.5)``: the method in
:mod:`hyperspy_hebt.signals` puts its keywords into the frozen groups of
:mod:`.options` (checked before anything is read); :func:`.problem.prepare` turns the
signal into a :class:`.problem.Problem` once (axes :mod:`.layout`, line maps
:mod:`.intensities`, grid, padding, trusted pixels and slab :mod:`.field`); the solvers
consume it (:mod:`.sirt`, :mod:`.hebt`, the automatic choices in :mod:`.auto`), run the
kernels of :mod:`hyperspy_hebt.tomography` through :mod:`.blocks` (eager batches or dask
blocks) and wrap the volumes as signals; :mod:`.quantify` turns them into fractions.
:mod:`.docstrings` holds the keyword descriptions every method shares.

Modules here import the array layers (``tomography``, ``quantification``, ``filtering``,
``diagnostics``, ``cross_validation``, ``physics``); none of those imports this package.
"""
