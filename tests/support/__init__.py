"""Helpers and fixtures shared by the test packages (imported, never through a conftest)."""
