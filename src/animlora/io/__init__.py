"""Input/output helpers: atomic file writes, image read/write, video decode."""
