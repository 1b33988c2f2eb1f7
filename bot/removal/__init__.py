"""Background removal: the Freepik client, sources, pipeline, cache and coalescing, relay."""
