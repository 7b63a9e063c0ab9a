"""Profit: revenue recognition, FX, costs, profit and margin, unit-level allocation, the reconciliation
with Finance, the Profit checks and the Profit runbooks' logic."""
