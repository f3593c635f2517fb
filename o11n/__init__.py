"""o11n: a small, stable CI and build orchestration platform."""

__version__ = "0.1.0"
