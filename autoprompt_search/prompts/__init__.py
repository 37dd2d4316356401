"""Prompts: the template language, verbalizers, calibration and demonstration settings, and the
:class:`~.prompt.Prompt` that carries them with what a search found (trigger ids, soft vectors, deep
prefixes), saved as JSON + safetensors. Plain data about *what* is asked; nothing here runs the
model's forward pass."""
