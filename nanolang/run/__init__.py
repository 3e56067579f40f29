"""Running instances: executor, interpreter, expressions, context, choice scoring, records."""
