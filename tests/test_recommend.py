"""The sequential recommender (acceltune.recommend): data and split, full-ranking metrics by hand, a model that
learns a planted pattern popularity cannot see, exact resume through the core loop, cold items after add-items,
bad input as one line and exit 2."""

from __future__ import annotations

import csv
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from acceltune import DataArgs, ModelArgs, TrainArgs, TrainConfig, train
from acceltune.recommend.additems import add_items
from acceltune.recommend.data import InteractionColumns, leave_one_out, read_interactions
from acceltune.recommend.metrics import EXCLUDED, evaluation_rows, exclude, ranking_metrics, rows_metrics, target_ranks, top_k
from acceltune.recommend.model import MAX_INPUT_TOKENS
from acceltune.recommend.recommender import Query, Recommender
from acceltune.recommend.task import RecommendSettings, SequentialRecommendation
from acceltune.training.loop import TrainingInterrupted
from helpers import run_cli
from test_task import interrupting

NUM_ITEMS = 60


def write_planted(tmp: Path, users: int = 200, seed: int = 0) -> tuple[Path, Path]:
    """Each user walks the item cycle i0 -> i1 -> ... -> i59 -> i0 from a random start: the next item is always
    the successor, which a sequence model learns and item popularity (uniform) cannot."""
    rng = random.Random(seed)
    inter, items = tmp / "interactions.csv", tmp / "items.csv"
    with open(inter, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        for u in range(users):
            start, n = rng.randrange(NUM_ITEMS), rng.randint(5, 15)
            for t in range(n):
                w.writerow([f"u{u}", f"i{(start + t) % NUM_ITEMS}", 1000 + t])
    with open(items, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        for i in range(NUM_ITEMS):
            w.writerow([f"i{i}", f"{['red', 'green', 'blue', 'gold', 'grey'][i % 5]} {['lamp', 'chair', 'table'][i % 3]} {i}"])
    return inter, items


def recommend_config(inter: Path, out: Path, **train_kw) -> TrainConfig:
    kw = dict(output_dir=str(out), batch_size=32, learning_rate=5e-3, epochs=8, warmup_ratio=0.0, weight_decay=0.0,
              label_smoothing=0.0, seed=1, precision="fp32")
    kw.update(train_kw)
    return TrainConfig(data=DataArgs(train=str(inter)),
                       model=ModelArgs(model="minilm", max_length=MAX_INPUT_TOKENS, freeze_embeddings=False),
                       train=TrainArgs(**kw))


def small_settings(**kw) -> RecommendSettings:
    return RecommendSettings(**{"hidden": 32, "blocks": 1, "heads": 1, "max_len": 20, "dropout": 0.1, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("recommend")
    inter, items = write_planted(tmp)
    # Two evaluations (and checkpoints) in 56 steps: the test is about what is learned, not the schedule.
    result = train(recommend_config(inter, tmp / "model", eval_every=28), quiet=True,
                   task=SequentialRecommendation(small_settings(items=str(items))))
    return tmp / "model", result.metrics, tmp


def test_leave_one_out_holds_out_the_last_two_and_keeps_short_users_for_training(tmp_path):
    path = tmp_path / "i.csv"
    # u1's events are out of order in the file; u2 has two (training only); a duplicate event counts once.
    path.write_text("user,item,ts\nu1,c,30\nu1,a,10\nu1,b,20\nu1,d,40\nu2,a,5\nu2,b,6\nu1,d,40\n")
    data = read_interactions(path, InteractionColumns())
    assert data.users == ["u1", "u2"]
    assert [data.catalogue.ids[i] for i in data.sequences[0]] == ["a", "b", "c", "d"]
    assert any("1 duplicate" in n for n in data.notes)
    split = leave_one_out(data.sequences)
    ids = data.catalogue.ids
    assert split.short_users == 1 and split.eval_users.tolist() == [0]
    assert [ids[i] for i in split.train[0]] == ["a", "b"] and [ids[i] for i in split.train[1]] == ["a", "b"]
    assert ids[split.validation_targets[0]] == "c" and ids[split.test_targets[0]] == "d"
    assert [ids[i] for i in split.history(0, "test")] == ["a", "b", "c"]


def test_full_ranking_metrics_match_a_hand_computation():
    scores = np.array([[0.9, 0.1, 0.5, 0.3, 0.7],   # history {0}: 0 excluded; target 3 -> behind 4, 2: rank 2
                       [0.2, 0.2, 0.2, 0.9, 0.1],   # target 2 ties 0 and 1: ties by index -> rank 3 (after 3, 0, 1)
                       [0.1, 0.8, 0.3, 0.2, 0.4]])  # history {1}; target 4 -> rank 0
    exclude(scores, [np.array([0]), np.array([], dtype=int), np.array([1])])
    assert scores[0, 0] == EXCLUDED
    targets = np.array([3, 2, 4])
    assert target_ranks(scores, targets).tolist() == [2, 3, 0]
    m = ranking_metrics(scores, targets)
    assert m["hr@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(5) + 1) / 3)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 4 + 1) / 3)
    # Top 10 of 5 items covers all 5 (excluded ones still fill the list when nothing else is left).
    assert m["coverage@10"] == 1.0 and m["users"] == 3
    # Ties at the 10th place go to the lowest indices: item 13 beats all, 14 equal items fill the other 9 places.
    tied = np.full((1, 20), 0.5)
    tied[0, 13] = 0.9
    tied[0, 2] = 0.1
    assert top_k(tied, 10).tolist() == [[13, 0, 1, 3, 4, 5, 6, 7, 8, 9]]


@pytest.mark.parametrize("items", [5, 40])
def test_the_per_batch_evaluation_rows_give_the_full_matrix_metrics(items):
    """Training evaluates through evaluation_rows (12 floats a user) instead of keeping every score: the same
    ranks, top 10 (ties by lower index, excluded items included) and metrics as the numpy full-matrix path."""
    rng = np.random.default_rng(0)
    scores = np.round(rng.random((64, items)), 1).astype(np.float32)  # rounded: many ties
    exclude(scores, [rng.choice(items, 3, replace=False) for _ in range(64)])
    targets = rng.integers(0, items, 64)
    rows = evaluation_rows(torch.from_numpy(scores), torch.from_numpy(targets)).numpy()
    assert rows[:, 0].astype(int).tolist() == target_ranks(scores, targets).tolist()
    top = top_k(scores, 10)
    assert rows[:, 2:2 + top.shape[1]].astype(int).tolist() == top.tolist()
    assert (rows[:, 2 + top.shape[1]:] == -1).all()
    expected = {**ranking_metrics(scores, targets),
                "loss": float(torch.nn.functional.cross_entropy(torch.from_numpy(scores), torch.from_numpy(targets)))}
    assert rows_metrics(rows, items) == pytest.approx(expected)


def test_the_model_learns_the_planted_pattern_that_popularity_cannot(trained):
    model_dir, metrics, _ = trained
    test, pop = metrics["test"], metrics["baselines"]["most_popular"]
    assert test["users"] == 200
    assert test["ndcg@10"] > 0.6 and test["ndcg@10"] > 2 * pop["ndcg@10"], (test, pop)
    assert {"hr@10", "ndcg@10", "recall@20", "mrr", "coverage@10"} <= set(test)
    report = (model_dir / "report.md").read_text()
    assert "most-popular" in report and "item-knn" in report and (model_dir / "comparison.png").is_file()
    # Served: the successor of the history's last item comes first.
    r = Recommender(model_dir)
    [answer] = r.recommend([Query(history=["i7", "i8", "i9"], k=3)])
    assert answer.strategy == "sequence" and answer.items[0] == "i10", answer


@pytest.mark.parametrize("objective", [{"objective": "masked", "masked_copies": 2}, {"negatives": 10}],
                         ids=["masked", "sampled-negatives"])
def test_the_masked_and_the_sampled_softmax_objectives_learn_it_too(tmp_path, objective):
    inter, _ = write_planted(tmp_path, users=120)
    result = train(recommend_config(inter, tmp_path / "model", eval_every=1000), quiet=True,
                   task=SequentialRecommendation(small_settings(**objective)))
    test, pop = result.metrics["test"], result.metrics["baselines"]["most_popular"]
    assert test["ndcg@10"] > 0.4 and test["ndcg@10"] > 2 * pop["ndcg@10"], (test, pop)


def test_unknown_users_get_popular_and_fresh_items_and_unknown_history_items_are_reported(trained):
    r = Recommender(trained[0])
    cold, mixed = r.recommend([Query(history=[], k=5), Query(history=["i3", "nope"], k=5, exclude=["i4"])])
    assert cold.strategy == "popular_and_fresh" and len(cold.items) == 5
    assert mixed.strategy == "sequence" and mixed.unknown_items == ["nope"] and "i4" not in mixed.items


TOPICS = {
    "jazz": ["saxophone record", "trumpet album", "piano trio live", "bebop session", "swing band LP", "cool jazz quartet",
             "big band concert", "blues ballad vinyl", "fusion record"],
    "soccer": ["football boots", "goalkeeper gloves", "match ball", "shin guards", "team jersey", "training cones",
               "penalty kick drill", "stadium scarf", "referee whistle"],
    "cooking": ["chef knife", "cast iron pan", "pasta recipe book", "spice rack", "baking tray", "wooden spoon set",
                "pressure cooker", "soup pot", "garlic press"],
    "space": ["telescope lens", "rocket model kit", "star map poster", "planet globe", "astronaut figure", "moon lamp",
              "galaxy puzzle", "mars rover toy", "satellite replica"],
    "garden": ["flower seeds", "watering can", "pruning shears", "compost bin", "garden hose", "tulip bulbs", "lawn rake",
               "plant pots", "herb planter"],
}
"""Five topics of nine items; the last item of each is held out of training and added later with add-items."""


def write_topics(tmp: Path, users: int = 200, seed: int = 0) -> tuple[Path, Path, Path]:
    """Each user interacts with 6 of the 8 training items of one topic, in random order: the next item is one of
    the topic's, which only the item text (the topic's name in every title) tells a new item apart by."""
    rng = random.Random(seed)
    inter, items, new = tmp / "interactions.csv", tmp / "items.csv", tmp / "new.csv"
    names = list(TOPICS)
    with open(items, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        for t in names:
            w.writerows([f"{t}{j}", f"{t}: {title}"] for j, title in enumerate(TOPICS[t][:-1]))
    with open(inter, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        for u in range(users):
            t = names[u % len(names)]
            w.writerows([f"u{u}", f"{t}{j}", s] for s, j in enumerate(rng.sample(range(len(TOPICS[t]) - 1), 6)))
    with open(new, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "title"])
        w.writerows([f"new_{t}", f"{t}: {TOPICS[t][-1]}"] for t in names)
        w.writerow(["jazz0", "jazz: saxophone record"])  # already in the model: skipped
    return inter, items, new


def test_a_cold_item_is_recommendable_after_add_items(tmp_path):
    inter, items, new = write_topics(tmp_path)
    train(recommend_config(inter, tmp_path / "model", eval_every=1000), quiet=True,
          task=SequentialRecommendation(small_settings(items=str(items))))
    model_dir = tmp_path / "model"
    assert add_items(model_dir, str(new)) == (len(TOPICS), 1)
    assert add_items(model_dir, str(new)) == (0, len(TOPICS) + 1)  # the same file again changes nothing
    rec = Recommender(model_dir)
    assert rec.num_items == len(TOPICS) * (len(next(iter(TOPICS.values()))))
    for t in TOPICS:
        # Three items of the topic seen: 5 unseen training items of it remain, and the new one must come right
        # after them, ahead of every item of the other topics (scored from its text alone).
        [answer] = rec.recommend([Query(history=[f"{t}0", f"{t}1", f"{t}2"], k=6)])
        assert f"new_{t}" in answer.items, (t, answer)
        assert all(i.startswith((t, f"new_{t}")) for i in answer.items), (t, answer)
    # Fresh items follow the popular ones for users without history, newest first.
    [cold] = rec.recommend([Query(history=[], k=rec.num_items)])
    assert cold.items[-len(TOPICS):] == [f"new_{t}" for t in reversed(TOPICS)], cold.items


def test_onnx_export_scores_as_the_model_does(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'acceltune[export]'")
    import onnxruntime as ort

    from acceltune.recommend.export import ONNX_FILE, export_onnx, random_histories

    parity = export_onnx(trained[0], tmp_path / "onnx")
    assert parity["max_abs_diff"] < 1e-3 and parity["same_top1"] == 1.0
    model = Recommender(trained[0]).model
    session = ort.InferenceSession(str(tmp_path / "onnx" / ONNX_FILE), providers=["CPUExecutionProvider"])
    for width in (model.config.max_len, 3):  # the length axis is dynamic: the server pads to its longest history
        ids, mask = random_histories(model.config.num_items, width, 5, seed=3)
        got = session.run(["scores"], {"input_ids": ids, "attention_mask": mask})[0]
        with torch.inference_mode():
            want = model.recommend(torch.from_numpy(ids), torch.from_numpy(mask), exclude_history=False).numpy()
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_the_export_recommends_as_the_model_directory_does(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'acceltune[export]'")
    from acceltune.errors import UserError
    from acceltune.recommend.export import export_onnx

    export_onnx(trained[0], tmp_path / "onnx")
    torch_rec, onnx_rec = Recommender(trained[0]), Recommender(tmp_path / "onnx", threads=1)
    assert (torch_rec.backend, onnx_rec.backend) == ("torch", "onnx")
    rng = random.Random(5)
    queries = [Query(history=[f"i{rng.randrange(NUM_ITEMS)}" for _ in range(rng.randint(1, 30))], k=5,
                     exclude=[f"i{rng.randrange(NUM_ITEMS)}"]) for _ in range(12)]
    queries += [Query(history=[]), Query(history=["zzz"], k=3), Query(history=["i4"], k=NUM_ITEMS, exclude_seen=False)]
    for a, b in zip(torch_rec.recommend(queries), onnx_rec.recommend(queries)):
        assert (a.items, a.strategy, a.unknown_items) == (b.items, b.strategy, b.unknown_items)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-3)
    with pytest.raises(UserError, match="is an ONNX export, which holds no trained weights"):
        add_items(tmp_path / "onnx", trained[2] / "items.csv")


def test_resume_is_exact(tmp_path):
    inter, _ = write_planted(tmp_path, users=60)
    kw = dict(max_steps=6, save_every=2, eval_every=3, batch_size=8)
    settings = small_settings()
    full = train(recommend_config(inter, tmp_path / "full", **kw), task=SequentialRecommendation(settings), quiet=True)
    with pytest.raises(TrainingInterrupted):
        train(recommend_config(inter, tmp_path / "part", **kw), task=interrupting(SequentialRecommendation, 3)(settings),
              quiet=True)
    resumed = train(recommend_config(inter, tmp_path / "part", resume=True, **kw), task=SequentialRecommendation(settings),
                    quiet=True)
    a = load_file(tmp_path / "full" / "checkpoints" / "step-00000006" / "model.safetensors")
    b = load_file(tmp_path / "part" / "checkpoints" / "step-00000006" / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert resumed.metrics["test"] == full.metrics["test"]


BAD_INPUT = [
    ("user_id,item_id\nu1,a\n", None, "no timestamp column"),
    ("user_id,item_id,timestamp\nu1,a,1\nu1,b,yesterday\n", None,
     "non-numeric timestamp(s) in column 'timestamp' (first at data row 2"),
    ("user_id,item_id,timestamp\nu1,a,1\nu1,b,2\nu1,zz,3\nu1,yy,4\n", "item_id,title\na,A\nb,B\n",
     "2 interacted item(s) missing from the items file (yy, zz)"),
    ("user_id,item_id,timestamp\nu1,a,1\n", "item_id,title\na,A\na,again\n", "1 duplicate item id(s)"),
    ("user_id,item_id,timestamp\nu1,a,1\nu2,b,2\n", None, "no user has 3 or more interactions"),
]


@pytest.mark.parametrize("interactions, items, message", BAD_INPUT)
def test_bad_input_names_the_problem(tmp_path, interactions, items, message):
    from acceltune.errors import UserError

    (tmp_path / "i.csv").write_text(interactions)
    if items:
        (tmp_path / "items.csv").write_text(items)
    task = SequentialRecommendation(RecommendSettings(items=str(tmp_path / "items.csv") if items else None))
    with pytest.raises(UserError) as e:
        task.load_splits(DataArgs(train=str(tmp_path / "i.csv")), seed=0)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_input_on_the_command_line_is_one_line_and_exit_2(tmp_path):
    interactions, _, message = BAD_INPUT[1]
    (tmp_path / "i.csv").write_text(interactions)
    r = run_cli("recommend", "train", "--interactions", tmp_path / "i.csv", "--output-dir", tmp_path / "out")
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_a_posted_event_is_stored_and_changes_the_next_recommendation(trained, database_url):
    assert_events_change_recommendations(trained[0], database_url, backend="torch")


def test_the_export_serves_events_and_recommendations_alike(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'acceltune[export]'")
    from acceltune.recommend.export import export_onnx

    export_onnx(trained[0], tmp_path / "onnx")
    assert_events_change_recommendations(tmp_path / "onnx", f"sqlite:///{tmp_path / 'events.db'}", backend="onnx")


def assert_events_change_recommendations(model_dir: Path, database_url: str, backend: str) -> None:
    import asyncio

    from acceltune.recommend.routes import RecommendRoutes
    from acceltune.serve import ServeSettings, create_app
    from test_serve_routers import serving

    app = create_app(ServeSettings(model_dir=model_dir), routers=[RecommendRoutes(model_dir, database_url).router])

    async def main():
        async with serving(app) as c:
            out = {"cold": await c.post("/v1/recommend", json={"user_id": "newcomer", "k": 3})}
            out["event"] = await c.post("/v1/events", json={"user_id": "newcomer", "item_id": "i30", "timestamp": 5})
            out["again"] = await c.post("/v1/events", json={"user_id": "newcomer", "item_id": "i30", "timestamp": 5})
            out["after"] = await c.post("/v1/recommend", json={"user_id": "newcomer", "k": 3})
            await c.post("/v1/events", json={"user_id": "newcomer", "item_id": "i31", "timestamp": 6.5})
            out["later"] = await c.post("/v1/recommend", json={"user_id": "newcomer", "k": 3})
            out["unknown"] = await c.post("/v1/recommend", json={"history": ["i7", "zzz"], "k": 2, "exclude": ["i8"]})
            out["known_user"] = await c.post("/v1/recommend", json={"user_id": "u3", "exclude_seen": False})
            out["bad"] = await c.post("/v1/recommend", json={"history": ["i7"], "k": 0})
            out["bad_event"] = await c.post("/v1/events", json={"user_id": "u", "item_id": "i1", "timestamp": "now"})
            out["describe"] = await c.get("/v1/recommender")
            return out

    r = asyncio.run(main())
    cold = r["cold"].json()
    assert cold["strategy"] == "popular_and_fresh" and not cold["user_known"] and len(cold["items"]) == 3
    assert r["event"].json() == {"stored": True, "known_item": True}
    assert r["again"].json() == {"stored": False, "known_item": True}  # idempotent
    after = r["after"].json()
    assert after["strategy"] == "sequence" and after["user_known"] and after["history_length"] == 1
    assert after["items"][0]["item_id"] == "i31", after
    later = r["later"].json()
    assert later["history_length"] == 2 and later["items"][0]["item_id"] == "i32", later
    assert {"i30", "i31"}.isdisjoint(i["item_id"] for i in later["items"])  # seen items excluded
    unknown = r["unknown"].json()
    assert unknown["unknown_items"] == ["zzz"] and "i8" not in [i["item_id"] for i in unknown["items"]]
    assert r["known_user"].json()["user_known"] and len(r["known_user"].json()["items"]) == 10
    assert r["bad"].status_code == 422 and r["bad_event"].status_code == 422
    assert r["describe"].json()["backend"] == backend and r["describe"].json()["items"] == NUM_ITEMS


def test_item_text_embeddings_are_cached_by_encoder_and_texts(tmp_path, monkeypatch):
    from acceltune import resolve_model
    from acceltune.recommend import text as text_module

    calls = []
    real = text_module.encode_texts
    monkeypatch.setattr(text_module, "encode_texts", lambda path, texts: calls.append(len(texts)) or real(path, texts))
    encoder = resolve_model("minilm")
    first = text_module.cached_text_embeddings(encoder, ["jazz: trumpet album", "soccer: match ball"], tmp_path)
    again = text_module.cached_text_embeddings(encoder, ["jazz: trumpet album", "soccer: match ball"], tmp_path)
    changed = text_module.cached_text_embeddings(encoder, ["jazz: trumpet album", "garden: lawn rake"], tmp_path)
    assert calls == [2, 2]  # the second call read the cache; a changed text encodes again
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first[0], changed[0], atol=1e-5)
    assert not np.allclose(first[1], changed[1])
    assert (tmp_path / text_module.TEXT_CACHE_FILE).is_file()


def test_training_runs_data_parallel_over_two_processes(tmp_path):
    from acceltune import train_or_launch

    inter, items = write_planted(tmp_path, users=120)
    task = SequentialRecommendation(small_settings(items=str(items)), text_cache_dir=tmp_path / "model")
    code, out, metrics = train_or_launch(recommend_config(inter, tmp_path / "model", epochs=2, nproc_per_node=2), task)
    assert code == 0 and out == tmp_path / "model"
    assert metrics["world_size"] == 2 and 0 <= metrics["test"]["ndcg@10"] <= 1
    [answer] = Recommender(out).recommend([Query(history=["i3", "i4"], k=5)])  # what rank 0 wrote loads and serves
    assert answer.strategy == "sequence" and len(answer.items) == 5


@pytest.mark.parametrize("negatives", [0, 7])
def test_cold_targets_score_the_target_from_its_text_alone_and_nothing_else(negatives):
    from acceltune.recommend.model import ITEM_OFFSET, RecommenderConfig, SequenceRecommender

    torch.manual_seed(0)
    config = RecommenderConfig(num_items=20, text_dim=8, hidden=16, blocks=1, heads=1, max_len=6, dropout=0.0,
                               id_dropout=0.0, negatives=negatives, cold_targets=1.0)
    model = SequenceRecommender(config, torch.randn(20, 8)).train()
    rows = torch.tensor([[2, 3, 4, 5, -1], [6, 7, 8, 9, 10]])  # catalogue indices; -1: padding
    ids = torch.where(rows >= 0, rows + ITEM_OFFSET, 0)
    mask = (ids != 0).long()
    torch.manual_seed(1)
    logits = model(ids, mask).logits
    items = model.item_vectors()
    h = model.encode(ids[:, :-1], mask[:, :-1], items)[mask[:, 1:].bool()]
    targets = ids[:, 1:][mask[:, 1:].bool()] - ITEM_OFFSET
    text_only = (h * model.text_projection(model.item_text[targets])).sum(-1)  # computed here, not by the model
    column = targets if not negatives else torch.zeros_like(targets)
    torch.testing.assert_close(logits[torch.arange(len(targets)), column], text_only)
    if not negatives:  # every other item keeps its id
        full = h @ items.T
        off = torch.ones_like(full, dtype=torch.bool)
        off[torch.arange(len(targets)), targets] = False
        torch.testing.assert_close(logits[off], full[off])
    with pytest.raises(Exception, match="--cold-targets works with --objective causal"):
        RecommenderConfig(num_items=20, objective="masked", cold_targets=0.5)


def test_two_server_processes_share_the_posted_events(trained, tmp_path):
    import httpx

    from servers import running_server

    args = ["recommend", "serve", trained[0], "--db", f"sqlite:///{tmp_path / 'events.db'}", "--processes", "2"]
    with running_server(args, tmp_path / "server.log") as base:
        # A new connection per call: the kernel hands each to either process; every answer must see every event.
        answers = []
        for n, user in enumerate(f"newcomer{i}" for i in range(6)):
            assert httpx.post(f"{base}/v1/events", json={"user_id": user, "item_id": "i30", "timestamp": n}).json()["stored"]
            answers.append(httpx.post(f"{base}/v1/recommend", json={"user_id": user, "k": 3}).json())
    assert all(a["strategy"] == "sequence" and a["history_length"] == 1 and a["items"][0]["item_id"] == "i31"
               for a in answers), answers
    assert len(re.findall(r"stopped: \d+ requests received", (tmp_path / "server.log").read_text())) == 2
