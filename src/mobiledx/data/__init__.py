"""Dataset adapters, demo-data generation, image decoding and the manifest schema."""
