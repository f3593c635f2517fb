"""The `o11n` command."""
