"""dynod: a self-hosted Heroku runtime."""
