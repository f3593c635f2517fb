"""The pure domain of o11n: no I/O, no asyncio, no database."""
