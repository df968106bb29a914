"""Tests of implicit_viz.core.gradients, one file per module of the package."""
