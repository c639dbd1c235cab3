"""Differentiable ops on tensors, one file per family; forward and backward side by side."""
