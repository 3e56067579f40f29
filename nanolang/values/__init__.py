"""The expression language's values (kinds, text form) and its built-in functions."""
