"""Doorward consent package."""
