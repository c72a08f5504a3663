"""Identity: clustering cut-outs into characters, naming them, and the review decisions."""
