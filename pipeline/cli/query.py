"""kbak query commands (registered on import)."""
