"""Application mode: the portals that installed Taskwarden, their encrypted tokens, and the OAuth server."""
