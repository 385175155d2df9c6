"""Doorward hub package."""
