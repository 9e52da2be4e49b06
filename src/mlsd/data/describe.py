"""``mlsd data describe``: what is in a dataset, before any model sees it.

:func:`describe_dataset` computes a :class:`Description` (counts, date range, label rates, top
creators and topics, sparsity, watch completion) and writes a PNG histogram; :func:`
render_description` prints it as Rich tables. Everything is computed with Arrow, numpy and
pandas group-bys, so it runs on the ``large`` simulated scale (tens of millions of events).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from mlsd.config import LabelConfig
from mlsd.data.dataset import Dataset
from mlsd.data.labels import durations, valid_watch
from mlsd.data.schema import EVENT_TYPES
from mlsd.errors import ConfigError

__all__ = ["Description", "describe_dataset", "render_description"]

PlotKind = Literal["completion", "events_per_user"]


@dataclass
class Description:
    """Summary of a dataset. Rates are None where the data cannot give them.

    - ``events_by_type``: rows per event type, every type of the schema listed (zeros too).
    - ``n_users`` / ``n_videos``: rows of the users / videos tables (for an interactions-only
      log these are the ids seen in events); ``active_users`` / ``active_videos``: distinct ids
      in events. ``n_creators``: rows of the creators table, else distinct ``creator_id`` of
      the videos, None when there is no creator information.
    - ``valid_watch_rate``: share of plays that are valid watches (:mod:`mlsd.data.labels`);
      ``like_rate``: likes per play; ``ctr``: plays per impression (None without impressions);
      ``rating_positive_share``: share of ratings ``>= min_rating``.
    - ``top_creators`` / ``top_topics``: ``(id or topic, plays)``, most plays first (ties by
      id/name); the topic is the video's primary ``topic``.
    - ``sparsity``: ``1 - interaction_pairs / (n_users * n_videos)``, where interaction pairs
      are distinct (user, video) pairs of non-impression events (of all events when a log has
      impressions only).
    - ``completion_*``: ``watch_seconds / duration_s`` of plays where both are known and the
      duration is positive, clipped to [0, 1] (watch time may exceed duration a little);
      ``n_completion`` is how many plays that is.
    - ``plot_path`` / ``plot_kind``: the PNG written: the completion histogram, or, when no
      play has both watch time and duration, the distribution of events per user.
    """

    n_events: int
    events_by_type: dict[str, int]
    n_users: int
    n_videos: int
    n_creators: int | None
    active_users: int
    active_videos: int
    start: datetime
    end: datetime
    valid_watch_rate: float | None
    like_rate: float | None
    ctr: float | None
    rating_positive_share: float | None
    min_rating: float
    top_creators: list[tuple[int, int]] = field(default_factory=list)
    top_topics: list[tuple[str, int]] = field(default_factory=list)
    interaction_pairs: int = 0
    sparsity: float = 1.0
    n_completion: int = 0
    completion_mean: float | None = None
    completion_median: float | None = None
    plot_path: str | None = None
    plot_kind: PlotKind | None = None

    @property
    def days(self) -> float:
        """Length of the date range in days."""
        return (self.end - self.start).total_seconds() / 86_400

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (times as ISO-8601 text, top lists as records)."""
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        d["days"] = self.days
        d["top_creators"] = [{"creator_id": c, "plays": n} for c, n in self.top_creators]
        d["top_topics"] = [{"topic": t, "plays": n} for t, n in self.top_topics]
        return d


def _mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=bool)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _top(keys: np.ndarray, valid: np.ndarray, top: int) -> list[tuple[Any, int]]:
    """The ``top`` most frequent keys among ``valid`` rows: (key, count), ties by key."""
    if top == 0 or not valid.any():
        return []
    counts = pd.Series(keys[valid]).value_counts(sort=False)
    frame = pd.DataFrame({"key": counts.index, "n": counts.to_numpy()})
    frame = frame.sort_values(["n", "key"], ascending=[False, True], kind="stable").head(top)
    return [(k.item() if hasattr(k, "item") else k, int(n)) for k, n in frame.to_numpy()]


def _catalog_lookup(events: pa.Table, videos: pa.Table, column: str) -> pa.Array:
    """Per event row, ``videos[column]`` of its video (null when the video is unknown)."""
    idx = pc.index_in(events.column("video_id"), videos.column("video_id").combine_chunks())
    return pc.take(videos.column(column).combine_chunks(), idx)


def _pairs(users: np.ndarray, vids: np.ndarray) -> int:
    if len(users) == 0:
        return 0
    return int(pd.DataFrame({"u": users, "v": vids}).drop_duplicates().shape[0])


def describe_dataset(
    ds: Dataset,
    plot_path: Path | None = None,
    top: int = 10,
    labels: LabelConfig | None = None,
) -> Description:
    """Describe ``ds`` (see :class:`Description`); write the PNG to ``plot_path`` if given.

    ``labels`` are the label rules for ``valid_watch_rate`` and ``rating_positive_share``
    (default :class:`LabelConfig`). Parent directories of ``plot_path`` are created. Raises
    :class:`ConfigError` when ``top`` is negative.
    """
    if top < 0:
        raise ConfigError(f"top {top}: expected a number >= 0")
    cfg = labels or LabelConfig()
    ev = ds.events
    et = ev.column("event_type")
    by_type = {t: 0 for t in EVENT_TYPES}
    for row in pc.value_counts(et).to_pylist():
        by_type[row["values"]] = int(row["counts"])
    is_play = _mask(pc.equal(et, "play"))
    is_rating = _mask(pc.equal(et, "rating"))
    n_play, n_rating = int(is_play.sum()), int(is_rating.sum())
    valid = valid_watch(ev, ds.videos, cfg)
    users = np.asarray(ev.column("user_id").to_numpy(), dtype=np.int64)
    vids = np.asarray(ev.column("video_id").to_numpy(), dtype=np.int64)
    interaction = ~_mask(pc.equal(et, "impression"))
    if not interaction.any():
        interaction = np.ones(len(interaction), dtype=bool)
    pairs = _pairs(users[interaction], vids[interaction])
    cells = ds.users.num_rows * ds.videos.num_rows
    ts = pc.min_max(ev.column("timestamp"))

    if ds.creators is not None:
        n_creators: int | None = ds.creators.num_rows
    else:
        distinct = pc.count_distinct(ds.videos.column("creator_id"), mode="only_valid").as_py()
        n_creators = int(distinct) or None
    creator = _catalog_lookup(ev, ds.videos, "creator_id")
    creator_np = np.asarray(creator.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
    topic = _catalog_lookup(ev, ds.videos, "topic")
    topic_np = np.asarray(topic.fill_null("").to_numpy(zero_copy_only=False), dtype=object)

    watch = np.asarray(
        pc.cast(ev.column("watch_seconds"), pa.float64()).to_numpy(zero_copy_only=False),
        dtype=np.float64,
    )
    dur = durations(ev, ds.videos)
    has = is_play & ~np.isnan(watch) & (dur > 0)
    completion = np.clip(watch[has] / dur[has], 0.0, 1.0)

    desc = Description(
        n_events=ev.num_rows,
        events_by_type=by_type,
        n_users=ds.users.num_rows,
        n_videos=ds.videos.num_rows,
        n_creators=n_creators,
        active_users=len(np.unique(users)),
        active_videos=len(np.unique(vids)),
        start=ts["min"].as_py(),
        end=ts["max"].as_py(),
        valid_watch_rate=_rate(int((valid & is_play).sum()), n_play),
        like_rate=_rate(by_type["like"], n_play),
        ctr=_rate(n_play, by_type["impression"]),
        rating_positive_share=_rate(int((valid & is_rating).sum()), n_rating),
        min_rating=cfg.min_rating,
        top_creators=_top(creator_np, is_play & _mask(pc.is_valid(creator)), top),
        top_topics=_top(topic_np, is_play & _mask(pc.is_valid(topic)), top),
        interaction_pairs=pairs,
        sparsity=1.0 - pairs / cells if cells else 1.0,
        n_completion=len(completion),
        completion_mean=float(completion.mean()) if len(completion) else None,
        completion_median=float(np.median(completion)) if len(completion) else None,
    )
    if plot_path is not None:
        desc.plot_kind = _plot(Path(plot_path), completion, users)
        desc.plot_path = str(plot_path)
    return desc


def _plot(path: Path, completion: np.ndarray, users: np.ndarray) -> PlotKind:
    """Write the histogram PNG; returns what it shows."""
    # The object-oriented API with the Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    kind: PlotKind
    if len(completion):
        kind = "completion"
        ax.hist(completion, bins=20, range=(0.0, 1.0), color="#4c72b0", edgecolor="white")
        ax.set_xlabel("watch_seconds / duration_s (clipped to 1)")
        ax.set_ylabel("plays")
        ax.set_title(f"Watch completion of {len(completion):,} plays")
    else:
        kind = "events_per_user"
        _, per_user = np.unique(users, return_counts=True)
        ax.hist(per_user, bins=min(50, max(1, len(np.unique(per_user)))), color="#55a868")
        ax.set_xlabel("events per user")
        ax.set_ylabel("users")
        ax.set_title(
            "Events per user (no plays with both watch time and duration: no completion)",
            fontsize=9,
        )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return kind


def _fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def render_description(desc: Description, console: Console) -> None:
    """Print ``desc`` as Rich tables: overview, events by type, labels, top lists."""
    t = Table(title="dataset", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("events", f"{desc.n_events:,}")
    t.add_row("users (active)", f"{desc.n_users:,} ({desc.active_users:,})")
    t.add_row("videos (active)", f"{desc.n_videos:,} ({desc.active_videos:,})")
    t.add_row("creators", "n/a" if desc.n_creators is None else f"{desc.n_creators:,}")
    t.add_row("from", desc.start.isoformat())
    t.add_row("to", desc.end.isoformat())
    t.add_row("days", f"{desc.days:.1f}")
    t.add_row("user-video pairs", f"{desc.interaction_pairs:,}")
    t.add_row("sparsity", f"{desc.sparsity:.4%}")
    console.print(t)

    t = Table(title="events by type")
    t.add_column("event_type")
    t.add_column("rows", justify="right")
    t.add_column("share", justify="right")
    for k, n in desc.events_by_type.items():
        t.add_row(k, f"{n:,}", _fmt_rate(n / desc.n_events if desc.n_events else None))
    console.print(t)

    t = Table(title="labels", show_header=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_row("valid watches / plays", _fmt_rate(desc.valid_watch_rate))
    t.add_row("likes / plays", _fmt_rate(desc.like_rate))
    t.add_row("CTR (plays / impressions)", _fmt_rate(desc.ctr))
    t.add_row(f"ratings >= {desc.min_rating:g}", _fmt_rate(desc.rating_positive_share))
    if desc.completion_mean is not None and desc.completion_median is not None:
        t.add_row(
            f"watch completion mean / median ({desc.n_completion:,} plays)",
            f"{desc.completion_mean:.1%} / {desc.completion_median:.1%}",
        )
    else:
        t.add_row("watch completion", "n/a (no watch time with durations)")
    console.print(t)

    for title, rows, head in (
        ("top creators by plays", desc.top_creators, "creator_id"),
        ("top topics by plays", desc.top_topics, "topic"),
    ):
        if not rows:
            continue
        t = Table(title=title)
        t.add_column(head)
        t.add_column("plays", justify="right")
        for key, n in rows:
            t.add_row(str(key), f"{n:,}")
        console.print(t)
    if desc.plot_path is not None:
        what = "watch completion" if desc.plot_kind == "completion" else "events per user"
        console.print(f"histogram of {what}: {desc.plot_path}", markup=False, soft_wrap=True)
