"""Delivery surfaces: how a chat message, album, inline query and button press are answered."""
