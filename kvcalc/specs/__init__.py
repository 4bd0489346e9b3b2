"""Pydantic schemas for the spec files: models and accelerators."""

from kvcalc.specs.hardware import Efficiency, HardwareSpec, PeakTflops
from kvcalc.specs.model import AttentionSpec, MlpSpec, ModelSpec, MoeSpec

__all__ = ["AttentionSpec", "Efficiency", "HardwareSpec", "MlpSpec", "ModelSpec", "MoeSpec", "PeakTflops"]
