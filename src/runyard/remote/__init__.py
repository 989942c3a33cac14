"""runyard against a server: ``runyard.connect(url)`` (``remote.yard``) and the HTTP
client under it (``remote.client``), which the CLI's ``--server`` also uses."""
