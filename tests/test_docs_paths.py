"""README.md and docs/ name only paths that exist: every repository path they mention, and every
file a module list in docs/architecture.md names under its folder's heading."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
# a module list's own files; other bare names (``config.json``) are formats, not our paths
SOURCE = re.compile(r"^[\w*-]+\.(py|lark|jinja)$|^[\w-]+/[\w.*/-]*$")


# directories the code reads that no commit has filled yet, with the reason
NOT_YET = {
    "runtime/pipeline/plans/searched/": "`nanolang tune` plan sets (none before a GPU run)",
}


def exists(path: Path) -> bool:
    return any(path.parent.glob(path.name)) if "*" in path.name else path.exists()


def named(text: str) -> set[str]:
    """Backticked words and link targets that look like paths."""
    words = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)\s#]+)", text)
    return {w.rstrip(".,:;") for w in words if not w.startswith(("http", "-", "/"))}


def test_repository_paths_in_docs_exist() -> None:
    missing = []
    for doc in DOCS:
        for word in named(doc.read_text(encoding="utf-8")):
            head = word.split("/")[0]
            if word.startswith(tuple(NOT_YET)):
                continue
            if "/" in word and head in TOP and not exists(ROOT / word.split("::")[0]):
                missing.append(f"{doc.name}: {word}")
    assert missing == []


def module_lists(text: str) -> list[tuple[str, str]]:
    """(folder, bullet) for every bullet under a ``### folder/`` heading."""
    out, folder, bullet = [], None, ""
    for line in [*text.splitlines(), "### end"]:
        if line.startswith(("- ", "### ", "## ")) or not line.strip():
            if folder and bullet:
                out.append((folder, bullet))
            bullet = line if line.startswith("- ") else ""
            if line.startswith("#"):
                match = re.match(r"#+ ([\w/]+/)", line)
                folder = match.group(1) if match and match.group(1).split("/")[0] in TOP else None
        else:
            bullet += " " + line.strip()
    return out


def test_module_lists_of_the_architecture_name_existing_files() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    lists = module_lists(text)
    assert len(lists) > 50
    missing = []
    for folder, bullet in lists:
        words = re.findall(r"`([^`\s]+)`", bullet)
        sub = words[0] if words and words[0].endswith("/") else ""
        for word in words:
            if not SOURCE.match(word) or word.split("/")[0] in TOP:
                continue
            bases = [ROOT / folder / sub, ROOT / folder]
            if not any(exists(base / word) for base in bases):
                missing.append(f"{folder} {word}")
    assert missing == []
