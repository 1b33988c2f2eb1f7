"""Telegram transport: thin handlers, keyboards and the delivery surfaces."""
