"""Doorward hardware package."""
