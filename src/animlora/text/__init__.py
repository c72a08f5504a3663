"""Text the pipeline writes: caption composition, lint and the token budget
(:mod:`animlora.text.captions`). No catalog access: backends import it."""
