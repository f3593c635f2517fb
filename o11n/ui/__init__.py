"""The web dashboard: static pages served by the scheduler, talking to its HTTP API."""
