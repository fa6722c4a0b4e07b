"""The repository stands on its own: no tracked file points at background documents that are not in it (the
protocol's facts live in docs/protocol.md), nor at the machine it was written on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Spelled in pieces so that this file does not match itself.
OUTSIDE = re.compile("|".join(["PROTOCOL" + r"\.md", "DESIGN" + r"\.md", r"\.\./" + "shared", "/work/" + "shared"]))


def tracked_files() -> list[Path]:
    proc = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip("not a git checkout: no list of tracked files")
    return [ROOT / name for name in proc.stdout.decode().split("\0") if name]


def test_no_tracked_file_points_outside_the_repository():
    files = tracked_files()
    assert any(f.name == "protocol.md" for f in files)
    found = []
    for path in files:
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        text = path.read_bytes().decode("utf-8", errors="replace")
        found += [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group()}"
                  for m in OUTSIDE.finditer(text)]
    assert not found, "references to documents outside the repository:\n" + "\n".join(found)


def test_the_protocol_sections_cited_exist():
    """Code and docs cite docs/protocol.md by section (§3, §1b): each must be a heading there."""
    headings = set(re.findall(r"^#+ (\d+b?)\. ", (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8"), re.M))
    cited = {}
    for path in tracked_files():
        if path.suffix in (".py", ".md") and path.is_file():
            for m in re.finditer(r"protocol\.md,? ((?:§\d+b?(?:-§\d+)?(?:, )?)+)",
                                 path.read_text(encoding="utf-8", errors="replace")):
                for ref in re.findall(r"§(\d+b?)", m.group(1)):
                    cited.setdefault(ref, str(path.relative_to(ROOT)))
    assert cited and not {ref: where for ref, where in cited.items() if ref not in headings}
