"""kbak replay commands (registered on import)."""
