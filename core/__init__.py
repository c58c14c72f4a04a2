"""The shared floor of forcebench: errors, the registry, the backbone geometry, paths, atomic
file writes, the prompt timeline and the toy world. Nothing here imports another package of
the project; methods/, metrics/, kernels/ and bench/ build on it."""
