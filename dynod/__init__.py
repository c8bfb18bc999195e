"""dynod: a self-hosted Heroku runtime."""

__version__ = "0.1.0"
