"""The cutout studio's actions, records and callback data, no Telegram code."""
