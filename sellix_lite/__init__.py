"""sellix-lite: a self-hosted store engine for selling digital goods for crypto."""

__version__ = "0.1.0"
