"""A bundle's manifest: its format, the versions it needs, and the sha256 of every file beside it.

Shared by the writer and the loader, so it imports nothing but the standard library. The loader
refuses a bundle, with one line naming the file or the library, when the manifest's format is not
the one it reads, when an installed library is older than the bundle needs, or when any file is
missing, changed, or not listed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

FORMAT = 1  # the bundle layout this code writes and reads
MANIFEST = "manifest.json"
# the oldest onnxruntime that runs each ONNX opset (onnxruntime's compatibility table)
ORT_FOR_OPSET = {17: "1.14", 18: "1.14", 19: "1.16", 20: "1.17", 21: "1.20", 22: "1.20", 23: "1.22"}


class BundleError(ValueError):
    """A bundle that cannot be served: its message names the bundle and the file or version at fault."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """``{relative path: {sha256, bytes}}`` of every file under ``root`` except the manifest, in path order."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != MANIFEST)
    return {p.relative_to(root).as_posix(): {"sha256": sha256(p), "bytes": p.stat().st_size} for p in files}


def version_tuple(version: str) -> tuple[int, ...]:
    """``'1.17.3'``, ``'2.4.0rc1'``, ``'1.15.1.post1'`` -> (1, 17, 3), (2, 4, 0), (1, 15, 1): the leading numbers."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0].split("rc")[0])[:3])


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of bundle ``root``, its format checked; a BundleError when absent, unreadable or foreign."""
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"bundle '{root}': no {MANIFEST} (not a marquee bundle, or an export that did not finish)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BundleError(f"bundle '{root}': {MANIFEST} is not valid JSON ({err})") from err
    found = manifest.get("format") if isinstance(manifest, dict) else None
    if found != FORMAT:
        newer = isinstance(found, int) and found > FORMAT
        raise BundleError(f"bundle '{root}': format {found!r}, and this loader reads format {FORMAT} only"
                          + ("; it was written by a newer marquee: update marquee here" if newer else
                             "; export the run again"))
    return manifest


def check_versions(root: Path, manifest: dict[str, Any], installed: dict[str, str]) -> None:
    """Refuse when a library the bundle ``requires`` (name -> oldest version) is absent or older here."""
    for name, oldest in manifest.get("requires", {}).items():
        have = installed.get(name)
        if have is None:
            raise BundleError(f"bundle '{root}': needs {name}>={oldest}, which this loader does not know")
        if version_tuple(have) < version_tuple(oldest):
            raise BundleError(f"bundle '{root}': needs {name}>={oldest}, and this process has {name} {have}")


def check_files(root: Path, manifest: dict[str, Any]) -> None:
    """Refuse when a listed file is missing or its sha256 differs, or a file lies in the bundle unlisted."""
    listed = manifest.get("files", {})
    for name, entry in listed.items():
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle '{root}': file '{name}' is listed in {MANIFEST} but missing")
        found = sha256(path)
        if found != entry["sha256"]:
            raise BundleError(f"bundle '{root}': file '{name}' does not match its sha256 in {MANIFEST} "
                              f"({found[:12]}... != {entry['sha256'][:12]}...): the bundle was changed or damaged")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name != MANIFEST and name not in listed:
            raise BundleError(f"bundle '{root}': file '{name}' is not listed in {MANIFEST}; a bundle holds "
                              "nothing its manifest does not vouch for")
