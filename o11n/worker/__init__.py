"""The worker agent: registers, pulls jobs, runs them, ships logs and reports results."""
