"""Thin Telegram callbacks: unpack the update, call a service, reply."""
