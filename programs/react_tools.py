"""Host tools for programs/react.nano (``nanolang eval programs/react.nano --tools
programs/react_tools.py``): the agent's ``lookup`` action runs this Python function."""

from __future__ import annotations


def lookup(directory: dict[str, str], query: str) -> str:
    """What the directory says about the person the query names: an exact name first, then any
    listed name that occurs in the query (case-insensitive), else that nobody is listed."""
    wanted = query.strip()
    if wanted in directory:
        return directory[wanted]
    lowered = wanted.lower()
    for name, entry in directory.items():
        if name.lower() == lowered or (name and name.lower() in lowered.split()):
            return entry
    return f"nobody called {wanted} is listed."
