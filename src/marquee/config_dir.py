"""Where marquee's Hydra configs are: inside the installed package, or the repo's configs/ in a checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# a wheel carries them as marquee/configs; an editable install reads the repository's top-level configs/
CONFIG_DIR = _PACKAGE / "configs" if (_PACKAGE / "configs").is_dir() else _PACKAGE.parents[1] / "configs"
