"""Source text to syntax tree and back: grammar, parser, tree, strings, errors, formatter."""
