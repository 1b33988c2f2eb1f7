"""A Telegram bot that removes image backgrounds through Freepik's API."""

__version__ = "0.1.0"
