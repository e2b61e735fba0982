"""newsbeam's stages and the pure functions beside them; what the workers run."""

# The one version string: setup.py reads it from this file, and the fetchers send it in their User-Agent.
__version__ = "0.1.0"
