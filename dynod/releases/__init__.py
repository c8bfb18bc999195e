"""Releases: deploys, config changes and rollbacks, each a numbered release."""
