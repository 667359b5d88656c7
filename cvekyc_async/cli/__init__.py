"""The ``cvekyc`` application: one module per command or concern. The library never imports
it."""

from .main import main

__all__ = ["main"]
