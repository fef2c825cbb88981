"""Continuous upload of ./outputs and ./logs to a store (fsspec)."""
