"""Fetch MovieLens files: GroupLens zips checked by MD5, or ML-100K from the RecBole wheel checked by SHA-256.

Every file is written under a temporary name and renamed, and only after its archive's or its own
checksum matched, so an interrupted or tampered download leaves nothing a later run would trust.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from marquee.data.atomic import atomic_path
from marquee.data.errors import DataError

log = logging.getLogger(__name__)

# MD5s that GroupLens publishes beside each zip (<zip url>.md5)
GROUPLENS_ZIPS: dict[str, str] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens/{name}.zip"

ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")  # RecBole's conversion of ML-100K
GROUPLENS_FILES = ("u.data", "u.item", "u.user")  # the original ML-100K layout
RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_MEMBER = "recbole/dataset_example/ml-100k/{name}"
# SHA-256 of the three files in the recbole 1.2.1 wheel, as listed in shared/data/README.md
RECBOLE_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


def ml100k_layout(root: str | Path) -> str | None:
    """``'atomic'`` or ``'grouplens'`` when ``root`` holds that layout's ratings and items, else ``None``."""
    root = Path(root)
    for layout, files in (("atomic", ATOMIC_FILES), ("grouplens", GROUPLENS_FILES)):
        if all((root / f).is_file() for f in files[:2]):  # the user file is optional
            return layout
    return None


def fetch_ml100k(
    root: str | Path,
    *,
    url: str | None = GROUPLENS_URL.format(name="ml-100k"),
    wheel_source: Callable[[Path], Path] | None = None,
    timeout: float = 10.0,
) -> Path:
    """Put ML-100K into ``root`` unless it is there: the GroupLens zip first, else the RecBole wheel from PyPI.

    ``url=None`` skips GroupLens; ``wheel_source(tmpdir)`` returns a wheel's path (by default
    ``pip download`` into ``tmpdir``), so tests can hand in a local one.
    """
    root = Path(root)
    if ml100k_layout(root):
        return root
    failures = []
    if url is not None:
        try:
            return fetch_grouplens("ml-100k", root, GROUPLENS_FILES, url=url, timeout=timeout)
        except (OSError, KeyError, DataError, zipfile.BadZipFile) as err:  # URLError, timeouts are OSErrors
            log.warning("ML-100K from GroupLens failed (%s); trying the RecBole wheel on PyPI", err)
            failures.append(f"GroupLens: {err}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wheel = (wheel_source or download_recbole_wheel)(Path(tmp))
            return install_from_wheel(wheel, root)
        except (OSError, DataError, subprocess.SubprocessError) as err:
            failures.append(f"RecBole wheel: {err}")
    raise DataError(
        f"could not fetch ML-100K into folder '{root}' ({'; '.join(failures)}); put {', '.join(ATOMIC_FILES)} "
        f"(RecBole) or {', '.join(GROUPLENS_FILES)} (GroupLens) there by hand"
    )


def fetch_grouplens(
    name: str, root: str | Path, files: Sequence[str], *, url: str | None = None, timeout: float = 30.0
) -> Path:
    """Download GroupLens's ``<name>.zip``, check its published MD5, and extract ``files`` into ``root``."""
    if name not in GROUPLENS_ZIPS:
        raise DataError(
            f"no pinned checksum for MovieLens '{name}'; download it by hand (known: {list(GROUPLENS_ZIPS)})"
        )
    url = url or GROUPLENS_URL.format(name=name)
    root = Path(root)
    log.info("downloading %s", url)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / f"{name}.zip"
        md5 = hashlib.md5()
        with urllib.request.urlopen(url, timeout=timeout) as response, archive.open("wb") as out:
            while chunk := response.read(1 << 20):
                md5.update(chunk)
                out.write(chunk)
        if md5.hexdigest() != GROUPLENS_ZIPS[name]:
            raise DataError(f"'{url}' has MD5 {md5.hexdigest()}, expected {GROUPLENS_ZIPS[name]}; nothing written")
        with zipfile.ZipFile(archive) as zf:
            for file in reversed(files):  # the files that mark a layout present are renamed last
                with zf.open(f"{name}/{file}") as src, atomic_path(root / file) as tmp_file, tmp_file.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    log.info("extracted %s into %s (archive MD5 verified)", ", ".join(files), root)
    return root


def download_recbole_wheel(directory: Path) -> Path:
    """Download the RecBole wheel (which ships ML-100K as atomic files) into ``directory`` with pip."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        RECBOLE_WHEEL,
        "-d",
        str(directory),
    ]
    log.info("downloading %s from PyPI for its ML-100K files", RECBOLE_WHEEL)
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    wheels = sorted(directory.glob("recbole-*.whl"))
    if result.returncode != 0 or not wheels:
        raise DataError(f"pip download {RECBOLE_WHEEL} failed: {result.stderr.strip()[-500:]}")
    return wheels[0]


def install_from_wheel(wheel: str | Path, root: str | Path) -> Path:
    """Copy ML-100K's atomic files out of a RecBole wheel into ``root``, all or none, each SHA-256 checked."""
    wheel, root = Path(wheel), Path(root)
    try:
        with zipfile.ZipFile(wheel) as zf:
            contents = {f: zf.read(RECBOLE_MEMBER.format(name=f)) for f in ATOMIC_FILES}
    except KeyError as err:
        raise DataError(f"file '{wheel}': no {err} inside; expected the {RECBOLE_WHEEL} wheel") from err
    except zipfile.BadZipFile as err:
        raise DataError(f"file '{wheel}': not a wheel (zip) file: {err}") from err
    for file, data in contents.items():  # check all before writing any
        digest = hashlib.sha256(data).hexdigest()
        if digest != RECBOLE_SHA256[file]:
            raise DataError(
                f"file '{wheel}', member '{RECBOLE_MEMBER.format(name=file)}': SHA-256 {digest}, "
                f"expected {RECBOLE_SHA256[file]}; nothing written"
            )
    for file, data in reversed(contents.items()):  # the files that mark the layout present go last
        with atomic_path(root / file) as tmp:
            tmp.write_bytes(data)
    log.info("wrote %s into %s (SHA-256 verified)", ", ".join(ATOMIC_FILES), root)
    return root
