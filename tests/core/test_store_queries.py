"""The reads callers ask the project file for (core/store/queries.py and friends): each returns
exactly the rows its caller needs, no more, in the order promised."""

import pytest

from core.store import ProjectStore


@pytest.fixture
def project(store: ProjectStore):
    """Training prompts 1 (plain) and 2 (a chat), evaluation prompt 3; samples of two models,
    a human rewrite and a checkpoint; ratings of every kind that the queries tell apart."""
    chat = [{"role": "user", "content": "hi"}]
    store.add_prompts([{"text": "one"}, {"text": "hi", "messages": chat}])
    store.add_prompts([{"text": "three"}], split="eval")
    run = store.create_run("dpo", {}, "m1", [])
    ckpt = store.add_checkpoint(
        run_id=run, step=10, kind="policy", path="c", sha256="x", base_model="m1", adapter=False
    )
    store.add_samples(
        [
            {"prompt_id": 1, "text": "s1", "model": "m1", "n_tokens": 5},
            {"prompt_id": 1, "text": "s2", "model": "m1", "n_tokens": 3},
            {"prompt_id": 1, "text": "s3", "model": "human:ann"},
            {"prompt_id": 2, "text": "s4", "model": "m2", "checkpoint_id": ckpt},
            {"prompt_id": 3, "text": "s5", "model": "m1", "params": {"temperature": 0.7}},
            {"prompt_id": 3, "text": "s6", "model": "m2"},
        ]
    )
    add = store.add_rating
    add(annotator="ann", kind="pairwise", sample_ids=[1, 2], value={"choice": "a"})  # 1
    add(annotator="ann", kind="skip", sample_ids=[1], value={})  # 2
    add(annotator="ann", kind="rewrite", sample_ids=[1, 3], value={})  # 3
    add(annotator="ann", kind="pairwise", sample_ids=[5, 6], value={"choice": "b"})  # 4
    add(annotator="bob", kind="score", sample_ids=[4], value={"scores": {"clarity": 1}})  # 5
    gone = add(annotator="cy", kind="score", sample_ids=[2], value={"scores": {"tone": 0}})
    store.set_superseded(gone)  # 6: undone
    return store


def test_what_an_annotator_has_seen_and_what_undo_reaches(project):
    def judged(*args, **kw):
        return sorted(project.sample_ids_judged_by(*args, **kw))

    assert judged("ann") == [[1], [1, 2], [1, 3], [5, 6]]
    assert judged("ann", kinds=("pairwise", "skip")) == [[1], [1, 2], [5, 6]]
    assert judged("ann", except_kinds=("rewrite",)) == [[1], [1, 2], [5, 6]]
    assert judged("cy") == [] and judged(" ann") == []  # undone; names are matched as given
    assert project.last_live_rating_id("ann") == 4
    assert project.last_live_rating_id("ann", exclude_ids=[4, 3]) == 2
    assert project.last_live_rating_id("cy") is None


def test_rating_counts_and_names(project):
    assert project.live_ratings_per_prompt() == {1: 1, 2: 1, 3: 1}  # no skip, rewrite, undone
    assert project.live_ratings_per_sample() == {1: 1, 2: 1, 4: 1, 5: 1, 6: 1}
    assert project.rated_prompt_ids() == {1, 2, 3}
    assert project.rating_annotators() == {"ann", "bob", "cy"}
    assert project.live_rating_count() == 4  # the skip and the undone rating do not count
    assert project.live_rating_count("ann") == 3 and project.live_rating_count("cy") == 0
    assert project.live_eval_pairwise_ratings() == [("ann", [5, 6], {"choice": "b"})]
    rows = project.trainable_rating_rows()
    assert [r[:4] for r in rows] == [
        (1, "ann", "pairwise", 1),
        (2, "ann", "skip", 1),
        (3, "ann", "rewrite", 1),
        (5, "bob", "score", 2),
    ]
    assert rows[0][4:] == ("[1, 2]", '{"choice": "a"}', 1)
    assert project.ratings_breakdown([1, 2, 5, 6]) == (
        (4, 3, 2),
        [("pairwise", 1, 1, 1), ("score", 2, 2, 2), ("skip", 1, 1, 1)],
    )
    assert project.score_criteria() == {"clarity", "tone"}
    assert project.export_count(False, None) == 5
    assert project.export_count(True, ["cy", "bob"]) == 2


def test_samples_and_prompts_by_id(project):
    assert project.sample_texts([2, 1, 99]) == {1: "s1", 2: "s2"}
    assert project.sample_prompt_ids((4, 5)) == {4: 2, 5: 3}
    assert project.sample_rows([5, 4, 99]) == {4: (2, "s4"), 5: (3, "s5")}
    assert project.sample_models((6, 6)) == {6: "m2"}
    assert project.sample_models() == {1: "m1", 2: "m1", 3: "human:ann", 4: "m2", 5: "m1", 6: "m2"}
    assert project.prompts_as_messages({1, 2}) == {
        1: [{"role": "user", "content": "one"}],
        2: [{"role": "user", "content": "hi"}],
    }
    many = project.add_samples(
        [{"prompt_id": 1, "text": f"t{i}", "model": "m3"} for i in range(1200)]
    )
    assert project.sample_texts(many) == {s: f"t{i}" for i, s in enumerate(many)}


def test_prompt_and_sample_lists(project):
    assert project.chat_prompt_ids() == {2}
    assert project.eval_prompt_count() == 1
    assert [pid for pid, _ in project.train_prompt_uuids()] == [1, 2]
    assert project.train_prompt_uuids()[0][1] == project.prompt(1)["uuid"]
    assert project.least_sampled_prompts("train") == [2, 1]  # the rewrite does not count
    assert project.least_sampled_prompts("train", limit=1) == [2]
    assert project.eval_answers_of("m1") == [(5, 3, {"temperature": 0.7})]
    assert project.train_samples() == [
        (1, 1, "one", "s1"),
        (2, 1, "one", "s2"),
        (3, 1, "one", "s3"),
        (4, 2, "hi", "s4"),
    ]
    assert project.train_model_samples() == [(1, 1), (2, 1), (4, 2)]
    assert project.samples_per_model() == [("m1", None, 3), ("human:ann", None, 1), ("m2", 1, 2)]
    assert project.generated_tokens() == 8


def test_runs_checkpoints_and_metrics(project):
    run = project.last_run_id()
    later = project.add_checkpoint(
        run_id=run, step=5, kind="reward", path="d", sha256="y", base_model="m1", adapter=True
    )
    assert project.furthest_checkpoint_id() == 1  # step 10 beats the newer step 5
    assert project.furthest_checkpoint_id(run, kind="reward") == later
    assert project.furthest_checkpoint_id(run + 1) is None
    assert project.newest_checkpoint_id() == later and project.newest_checkpoint_id("policy") == 1
    assert project.find_checkpoint(later)["metrics"] == "{}" and project.find_checkpoint(9) is None
    assert project.run_row(run)["rating_ids"] == "[]" and project.run_row(run + 1) is None
    project.log_metrics(run, 1, {"loss": 2.0, "kl": 0.1})
    project.log_metrics(run, 3, {"loss": 1.0})
    project.log_metrics(run, 9, {"loss": 0.5})
    assert project.metrics_up_to(run, 3) == [(1, "kl", 0.1), (1, "loss", 2.0), (3, "loss", 1.0)]
    assert project.final_metrics(run, 8) == {"loss": 1.0}
    assert project.final_metrics(run, 0) == {}


def test_pragmas_are_restored_and_columns_read(project):
    before = project.conn.execute("PRAGMA cache_size").fetchone()[0]
    with project.pragmas(cache_size=-4096):
        assert project.conn.execute("PRAGMA cache_size").fetchone()[0] == -4096
    assert project.conn.execute("PRAGMA cache_size").fetchone()[0] == before
    project.set_busy_timeout(1234)
    assert project.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
    assert project.column_names("metrics")[:4] == ["run_id", "step", "name", "value"]
