"""The web server: JSON API (and, later, the UI) on the core functions."""
