"""The package version, in a module of its own so that any block can read it without importing
the package's public surface (which imports ``mlsd.data``)."""

__version__ = "0.1.0"
