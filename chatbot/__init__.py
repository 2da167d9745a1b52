"""TRK Assistant: cited answers about TRK fusion cancer, with a server-side HCP gate."""

__version__ = "0.1.0"
