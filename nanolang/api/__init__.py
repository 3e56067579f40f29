"""The Python API: ``Program`` (load, compile, run) and the decorator API."""
