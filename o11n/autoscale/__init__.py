"""Elastic capacity: instance catalogs, providers that start and stop workers, the
autoscaler's control loop, cost accounting and the simulator."""
