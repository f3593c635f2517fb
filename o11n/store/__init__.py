"""Persistence: one schema for SQLite and PostgreSQL, written by a single group-commit writer."""
