"""hwnas: hardware-aware NAS with block-wise distilled supernets, measured latency tables and edge export."""

__version__ = "0.1.0"
