"""Image work with no Telegram code: plain functions and the process pool that runs them."""
