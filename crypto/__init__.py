"""Doorward crypto package."""
