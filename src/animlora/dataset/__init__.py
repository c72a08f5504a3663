"""Training datasets: sources of a character's instances, selection, images, trainer formats, report."""
