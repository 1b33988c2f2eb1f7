"""Shared state: one Protocol and its memory, SQLite and Redis backends."""
