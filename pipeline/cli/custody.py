"""kbak custody commands (registered on import)."""
