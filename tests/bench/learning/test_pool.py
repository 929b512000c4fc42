"""Answer digests the learning bench recorded at different sittings name one pool exactly when
each is the digest of the same answers cut at some length."""

from bench.learning import pool
from bench.learning.data import answers_digest
from core.store import ProjectStore


def test_digests_of_one_growing_file_are_found_at_their_lengths(tmp_path, capsys):
    db = tmp_path / "p.db"
    with ProjectStore(db) as store:
        store.add_prompts([{"text": "one"}, {"text": "two"}])
        store.add_samples([{"prompt_id": 1, "text": "a", "model": "m"}])
        store.add_samples([{"prompt_id": 2, "text": "b", "model": "m"}])
    rated = answers_digest(db)  # the pool, as a first sitting digests it
    with ProjectStore(db) as store:
        store.add_samples([{"prompt_id": 1, "text": "held-out", "model": "m"}])
    later = answers_digest(db)  # a later sitting's digest of the same file
    with ProjectStore(tmp_path / "other.db") as other:
        other.add_prompts([{"text": "one"}])
        other.add_samples([{"prompt_id": 1, "text": "not a", "model": "m"}])
    elsewhere = answers_digest(tmp_path / "other.db")  # another pool altogether

    assert rated != later
    assert pool.prefix_lengths(db, [rated, later, elsewhere]) == {
        rated: 2,
        later: 3,
        elsewhere: None,
    }
    assert pool.main([str(db), rated, later]) == 0
    assert pool.main([str(db), rated, elsewhere]) == 1
    assert "the first 2 answers" in capsys.readouterr().out
