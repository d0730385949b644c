"""Lets `python -m pytest` in service/ import `scripts` as the deployed app does."""
