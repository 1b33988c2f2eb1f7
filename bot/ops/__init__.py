"""Operations: logs that keep secrets out, and metrics."""
