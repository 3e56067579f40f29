"""The request graph of a checked module: its nodes, the builder, and text/JSON/dot renderers."""
