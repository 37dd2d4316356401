"""The command line (``autoprompt-search``): the top layer, which only parses arguments, calls the
layers below and prints. ``main`` is the entry point."""

from .app import main

__all__ = ["main"]
