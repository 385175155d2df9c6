"""Doorward device package."""
