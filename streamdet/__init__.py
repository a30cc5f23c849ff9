"""streamdet: streaming video anomaly detection for camera feeds."""

__version__ = "0.1.0"

__all__ = ["__version__"]
