"""Measured PyTorch runs against the predictions (validate) and measured roofs (calibrate).

torch is imported here and nowhere else in kvcalc, and only when these commands run.
"""
