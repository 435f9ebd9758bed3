"""Export marquee's leave-one-out split of a data set as RecBole benchmark files.

Runs in marquee's own venv. The data are loaded exactly as marquee loads them (Hydra compose of
``configs/train.yaml`` with ``data=<name>``, then ``marquee.data.pipeline.prepare_split``), and the
split's three parts are written as RecBole atomic files:

    <out>/<name>/<name>.train.inter   marquee's training rows
    <out>/<name>/<name>.valid.inter   marquee's validation targets (one per evaluated user)
    <out>/<name>/<name>.test.inter    marquee's test targets (one per evaluated user)
    <out>/<name>/<name>.split.json    counts, so a comparison can check both frameworks saw the same split

each with the header ``user_id:token  item_id:token  timestamp:float`` (tab-separated). Loaded by
RecBole with ``benchmark_filename: [train, valid, test]`` these give exactly marquee's targets.

    python scripts/recbole_export.py ml100k video_games --out ../recbole-data

Ids: the tokens are marquee's encoded integer ids (1..n; 0 is padding in both frameworks), so a
RecBole token maps straight back to a marquee id. RecBole re-numbers tokens internally in order of
first appearance (train file first), which changes nothing but the order in which exact score ties
are broken.

Timestamps: RecBole turns ``float`` fields into torch.float32, whose spacing near a Unix time of
~9e8 s is 64 s, so real timestamps would collapse within a minute and ties (same-second ratings)
would lose marquee's order. The ``timestamp`` written is therefore each row's rank in a global
order -- by (marquee timestamp, user id, the row's position in marquee's per-user order) -- a whole
number below 2**24 that float32 holds exactly. It is strictly increasing within each user in
exactly marquee's order (which breaks ties by source-file order) and agrees with real time across
users wherever real times differ. (Video Games has no times: marquee's timestamp is the position in
the user's sequence, so across users the order carries no meaning, within a user it is exact.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
HEADER = ["user_id:token", "item_id:token", "timestamp:float"]
PARTS = {"train": "train", "valid": "val", "test": "test"}  # RecBole file part -> marquee split part


def load_split(name: str):
    """Compose marquee's config for data set ``name`` and return its Split, as the training entry point would."""
    from hydra import compose, initialize_config_dir

    from marquee.data.pipeline import prepare_split

    os.environ.setdefault("MARQUEE_DATA_DIR", str((REPO / ".." / "shared" / "data").resolve()))
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"data={name}", "paths.output_dir=unused"])
    if cfg.data.split._target_ != "marquee.data.splits.LeaveOneOut":
        raise SystemExit(f"{name}: split is {cfg.data.split._target_}, this export is for LeaveOneOut only")
    return prepare_split(cfg.data)


def order_key(interactions: pd.DataFrame) -> pd.Series:
    """Rank of every row by (timestamp, user, position within the user); index as ``interactions``."""
    position = interactions.groupby("user_id", sort=False).cumcount().to_numpy()
    rank = np.lexsort((position, interactions["user_id"].to_numpy(), interactions["timestamp"].to_numpy()))
    key = np.empty(len(interactions), dtype=np.int64)
    key[rank] = np.arange(len(interactions))
    if len(interactions) >= 2**24:
        raise SystemExit("more than 2**24 rows: the order key would not be exact in RecBole's float32")
    return pd.Series(key, index=interactions.index)


def write_part(frame: pd.DataFrame, key: pd.Series, path: Path) -> str:
    """Write one part in RecBole atomic format, rows in marquee's order (user, then time); return its sha256."""
    out = pd.DataFrame(
        {
            HEADER[0]: frame["user_id"].to_numpy(np.int64),
            HEADER[1]: frame["item_id"].to_numpy(np.int64),
            HEADER[2]: key.loc[frame.index].to_numpy(np.int64),
        }
    )
    tmp = path.with_suffix(path.suffix + ".tmp")
    out.to_csv(tmp, sep="\t", index=False, lineterminator="\n")
    tmp.replace(path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_order(split, key: pd.Series) -> None:
    """Within every user the key must increase along marquee's order train -> val -> test."""
    inter = split.log.interactions
    k = key.loc[inter.index].to_numpy()
    same_user = inter["user_id"].to_numpy()[1:] == inter["user_id"].to_numpy()[:-1]
    if not (np.diff(k)[same_user] > 0).all():
        raise AssertionError("order key is not strictly increasing within a user")
    for earlier, later in ((split.train, split.val), (split.val, split.test)):
        latest = key.loc[earlier.index].groupby(earlier["user_id"].to_numpy()).max()
        target = key.loc[later.index].groupby(later["user_id"].to_numpy()).min()
        if not (latest.reindex(target.index) < target).all():
            raise AssertionError("a target is not later than the rows before it")


def counts(split) -> dict:
    """What both frameworks must agree on: sizes, evaluated users, and what is masked at each stage."""
    train, val, test = split.train, split.val, split.test

    def pairs(frame: pd.DataFrame) -> set[tuple[int, int]]:
        return set(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), strict=True))

    train_pairs, history_pairs = pairs(train), pairs(split.history("test"))
    items_in_train = set(train["item_id"].tolist())
    evaluated = set(test["user_id"].tolist())
    valid_users = set(val["user_id"].tolist())
    return {
        "dataset": split.log.name,
        "split": split.strategy,
        "fingerprint": split.log.fingerprint,
        "n_users": split.log.n_users,
        "n_items": split.log.n_items,
        "n_interactions": len(split.log),
        "train_interactions": len(train),
        "valid_interactions": len(val),
        "test_interactions": len(test),
        "train_users": int(train["user_id"].nunique()),
        "valid_users": int(val["user_id"].nunique()),
        "test_users": int(test["user_id"].nunique()),
        "users_not_evaluated": split.log.n_users - len(evaluated),
        "items_in_train": len(items_in_train),
        "items_only_in_valid_or_test": split.log.n_items - len(items_in_train),
        "test_targets_cold_item": int((~test["item_id"].isin(items_in_train)).sum()),
        "duplicate_user_item_pairs": int(split.log.interactions.duplicated(["user_id", "item_id"]).sum()),
        # RecBole never masks a user's own target (history = used items - positive items); marquee masks
        # the whole history. The two agree exactly when these counts are 0.
        "valid_targets_in_train": sum(p in train_pairs for p in pairs(val)),
        "test_targets_in_train_or_valid": sum(p in history_pairs for p in pairs(test)),
        # pairs masked for the evaluated users only (users left out of evaluation are never ranked)
        "masked_pairs_test_stage": sum(u in evaluated for u, _ in history_pairs),
        "masked_pairs_valid_stage": sum(u in valid_users for u, _ in train_pairs),
    }


def export(name: str, out: Path) -> dict:
    split = load_split(name)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    key = order_key(split.log.interactions)
    check_order(split, key)
    info = counts(split)
    info["files"] = {}
    for part, marquee_part in PARTS.items():
        path = folder / f"{name}.{part}.inter"
        info["files"][path.name] = write_part(getattr(split, marquee_part), key, path)
    info["timestamp_field"] = "rank in global (timestamp, user, position) order; exact in float32"
    info["id_tokens"] = "marquee encoded ids (1..n)"
    (folder / f"{name}.split.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", help="marquee data config names, e.g. ml100k video_games")
    # outside the repo by default: the files are derived data (MovieLens may not be redistributed)
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO.parent / "recbole-data",
        help="folder that receives <name>/<name>.{train,valid,test}.inter",
    )
    args = parser.parse_args(argv)
    for name in args.datasets:
        info = export(name, args.out)
        print(
            f"{name}: {info['train_interactions']} train, {info['valid_interactions']} valid, "
            f"{info['test_interactions']} test rows; {info['test_users']} test users, "
            f"{info['n_items']} items -> {args.out / name}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
