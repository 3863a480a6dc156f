"""expc: a compiler for experiment configuration kept in git."""

__version__ = "0.1.0"
