"""The log router: one stream per app, kept on disk and fanned out to tails."""
