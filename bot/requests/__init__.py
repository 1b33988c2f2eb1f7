"""Requests: the lifecycle, admission (limits and budget), the durable journal, the stream."""
