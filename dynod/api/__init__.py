"""dynod's JSON API, shaped like the Heroku Platform API v3."""
