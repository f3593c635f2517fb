"""Benchmarks of o11n: dispatch latency, durable submit throughput and fair share."""
