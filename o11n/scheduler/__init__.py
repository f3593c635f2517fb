"""The scheduler service: dispatch, leases, the HTTP/WebSocket API, events and metrics."""
