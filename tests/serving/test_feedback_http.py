"""The feedback loop through HTTP: watches posted to /v1/events move the next
/v1/recommendations of that user toward the watched topic (real Recommender, real app)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from fastapi.testclient import TestClient

from mlsd.config import SimulationConfig
from mlsd.data.simulate import simulate
from mlsd.pipeline import PipelineConfig, Recommender
from mlsd.serving.app import API_KEY_HEADER, create_app

KEY = "k"
CFG = PipelineConfig.model_validate(
    {
        "label_split": "global",
        "label_days": 3,
        "candidates": 150,
        "negatives_per_user": 40,
        "two_tower": {"epochs": 2},
        "ranker": {"n_estimators": 60},
    }
)


def test_posted_watches_shift_the_next_recommendations_toward_their_topic() -> None:
    data = simulate(SimulationConfig.for_scale("tiny", seed=0))
    rec = Recommender(CFG).fit(data)
    ids = np.asarray(data.videos.column("video_id").to_numpy())
    topic = np.asarray(data.videos.column("topic").to_pylist(), dtype=object)
    explicit = np.asarray(data.videos.column("is_explicit").to_numpy(zero_copy_only=False))
    duration = np.asarray(data.videos.column("duration_s").to_numpy())
    order = np.argsort(ids)
    ids, topic, explicit, duration = ids[order], topic[order], explicit[order], duration[order]
    client = TestClient(create_app(rec, api_key=KEY), raise_server_exceptions=False)
    user = int(rec.history_.users()[3])
    now = datetime.fromtimestamp(rec.now_ms_ / 1000, UTC)

    def topics_served(at: datetime) -> np.ndarray:
        r = client.post(
            "/v1/recommendations",
            json={"user_id": user, "k": 20, "context": {"time": at.isoformat()}},
        )
        assert r.status_code == 200, r.text
        served = [item["video_id"] for item in r.json()["items"]]
        return topic[np.searchsorted(ids, served)]

    before = topics_served(now)
    names, counts = np.unique(topic, return_counts=True)
    target = min(names, key=lambda t: (int((before == t).sum()), -int(counts[names == t][0])))
    vids = ids[(topic == target) & ~explicit][:12]
    events = [
        {
            "user_id": user,
            "video_id": int(v),
            "event_type": "play",
            "watch_seconds": float(duration[ids == v][0]),
            "timestamp": (now + timedelta(seconds=i)).isoformat(),
        }
        for i, v in enumerate(vids)
    ]
    r = client.post("/v1/events", json={"events": events}, headers={API_KEY_HEADER: KEY})
    assert r.status_code == 200, r.text
    # durable now, applied off the request path within a poll of the tailer
    assert client.app.state.service.ingestion.tailer.wait_caught_up(5.0)  # type: ignore[attr-defined]
    after = topics_served(now + timedelta(minutes=1))
    assert (after == target).sum() > (before == target).sum()
