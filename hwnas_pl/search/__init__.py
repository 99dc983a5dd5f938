"""Population searches (ask/tell strategies) and the runner behind `hwnas search`."""
