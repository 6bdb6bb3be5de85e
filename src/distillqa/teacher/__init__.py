"""Teacher backends and the generation stage."""
