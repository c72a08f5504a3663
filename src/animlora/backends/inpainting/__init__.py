"""Inpainting backends: fill a masked region of an image."""
