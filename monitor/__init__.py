"""regmon: watch container image tags in OCI / Docker Registry v2 registries."""

__version__ = "0.1.0"

__all__ = ["__version__"]
