"""One module per public preference-data format (see :mod:`prefaudit.loaders.common`)."""
