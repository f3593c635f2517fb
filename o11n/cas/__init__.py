"""The content-addressed store: blobs named by their SHA-256, and trees of them."""
