"""Static checks before any request: scopes, gen/select arguments, calls, constraints."""
