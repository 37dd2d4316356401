"""Prompts: the template language, verbalizers, calibration and demonstration settings, deep prefixes,
and the :class:`~.prompt.Prompt` that carries them (saved as JSON + safetensors). Plain data about
*what* is asked; nothing here runs the model's forward pass."""
