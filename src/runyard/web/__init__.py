"""The web server: the JSON API and the UI, on the core functions."""

# Host names a server on a loopback address answers to (DNS rebinding guard). Here, not
# in app.py, so that the CLI can read it without importing the web stack.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
