"""Registers the shared fixtures (tests/support/fixtures.py) for every test package."""
pytest_plugins = ["tests.support.fixtures"]
