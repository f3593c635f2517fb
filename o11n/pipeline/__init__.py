"""Pipeline files: loading YAML with positions, and (later) running pipelines."""
