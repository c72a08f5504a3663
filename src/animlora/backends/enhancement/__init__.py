"""Enhancement backends: super-resolution of small character crops (see docs/enhance.md)."""
