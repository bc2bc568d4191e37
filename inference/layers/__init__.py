"""Model building blocks. They call `inference.ops` for device work and never
a kernel directly, so a new backend changes no layer."""
