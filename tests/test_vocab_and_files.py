"""Vocabularies and run files: round trips, padding, and no half-written file after a crash."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from marquee.data.atomic import atomic_path, write_json
from marquee.data.errors import DataError
from marquee.data.vocab import Vocabulary
from tests.helpers import make_log


def test_vocabulary_round_trips_through_parquet(tmp_path):
    vocab = Vocabulary.fit(pd.Series(["x9", "a1", "x9", "m5"]))
    assert len(vocab) == 3 and vocab.size == 4
    ids = vocab.encode(np.array(["m5", "a1"]))
    assert ids.tolist() == [2, 1]
    loaded = Vocabulary.load(vocab.save(tmp_path / "items.parquet"))
    assert loaded == vocab
    assert loaded.decode(ids).tolist() == ["m5", "a1"]


def test_integer_raw_ids_keep_numeric_order_and_type(tmp_path):
    vocab = Vocabulary.fit(np.array([10, 2, 33]))
    assert vocab.encode(np.array([2, 10, 33])).tolist() == [1, 2, 3]
    assert Vocabulary.load(vocab.save(tmp_path / "u.parquet")).decode(np.array([3])).tolist() == [33]


def test_unknown_raw_ids_and_padding_are_refused():
    vocab = Vocabulary.fit(np.array(["a", "b"]))
    with pytest.raises(DataError, match="not in the vocabulary"):
        vocab.encode(np.array(["c"]))
    assert vocab.encode(np.array(["c"]), strict=False).tolist() == [0]
    with pytest.raises(DataError, match="0 is padding"):
        vocab.decode(np.array([0]))


def test_a_file_that_is_not_a_vocabulary_is_refused(tmp_path):
    pd.DataFrame({"raw_id": ["a"], "id": [5]}).to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not a marquee vocabulary"):
        Vocabulary.load(tmp_path / "bad.parquet")


def test_a_crash_while_writing_leaves_neither_file_nor_temporary(tmp_path):
    target = tmp_path / "cache.json"
    write_json({"ok": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("killed mid-write")
    assert target.read_text().strip().startswith("{") and '"ok": 1' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_saved_vocabularies_and_metadata_decode_a_log(tmp_path):
    log = make_log([("u2", "b", 1), ("u1", "a", 2)])
    log.save_vocabularies(tmp_path / "vocab")
    users = Vocabulary.load(tmp_path / "vocab" / "users.parquet")
    items = Vocabulary.load(tmp_path / "vocab" / "items.parquet")
    decoded = list(zip(users.decode(log.interactions.user_id), items.decode(log.interactions.item_id)))
    assert sorted(decoded) == [("u1", "a"), ("u2", "b")]
