"""Data: examples and tasks, the file readers and loaders that make them, and the demo tasks shipped
with the package. The bottom layer above errors/atomic: it knows nothing of models or prompts."""
