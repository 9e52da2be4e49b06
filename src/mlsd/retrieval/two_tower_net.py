"""The two-tower network (PyTorch) and its sampled-softmax loss.

Video tower: embeddings of the video id, primary topic, creator, duration bucket, freshness
(age bucket) and recent popularity (log2 bucket of its positives in the trailing window, counted
strictly before the example's time) -> MLP -> L2-normalised ``dim`` vector.
User tower: a hashed user-id embedding, the mean of the user's last watched videos' id, topic
and creator embeddings (the *same* tables as the video tower: a watched video and a candidate
live in one space) and embeddings of the user's categorical attributes -> MLP -> L2-normalised.
Score: ``<u, v> / temperature``.

Loss: in-batch sampled softmax with the logQ correction of Yi et al., "Sampling-Bias-Corrected
Neural Modeling for Large Corpus Item Recommendations", RecSys 2019: the other positives of the
batch are the negatives, and since a video appears as a negative in proportion to its frequency
``q_j`` among training positives, ``log q_j`` is subtracted from logit ``(i, j)`` so that the
softmax estimates the full-corpus softmax instead of favouring the tail. Other rows holding the
same video as row ``i`` are masked out of row ``i`` (they are not negatives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlsd.retrieval._encode import N_AGE_BUCKETS, N_DURATION_BUCKETS, N_POP_BUCKETS

__all__ = ["TwoTowerNet", "in_batch_softmax_loss"]


class TwoTowerNet(nn.Module):
    """Both towers. Index 0 of every embedding table means unknown / padding.

    Embedding tables are ``sparse=True``: a step touches only the rows of its batch, so the
    optimiser cost does not grow with the catalog (1M videos).
    """

    def __init__(
        self,
        *,
        n_videos: int,
        n_topics: int,
        n_creators: int,
        n_user_buckets: int,
        user_cardinalities: list[int],
        dim: int,
        id_dim: int,
        topic_dim: int,
        creator_dim: int,
        user_id_dim: int,
        hidden: int,
    ) -> None:
        super().__init__()
        self.video_id = nn.Embedding(n_videos + 1, id_dim, padding_idx=0, sparse=True)
        self.topic = nn.Embedding(n_topics, topic_dim, padding_idx=0, sparse=True)
        self.creator = nn.Embedding(n_creators + 1, creator_dim, padding_idx=0, sparse=True)
        self.duration = nn.Embedding(N_DURATION_BUCKETS, 8)
        self.age = nn.Embedding(N_AGE_BUCKETS, 8)
        self.popularity = nn.Embedding(N_POP_BUCKETS, 8)
        self.user_id = (
            nn.Embedding(n_user_buckets, user_id_dim, sparse=True) if user_id_dim > 0 else None
        )
        self.user_feats = nn.ModuleList(nn.Embedding(c, 8) for c in user_cardinalities)
        for e in (self.video_id, self.topic, self.creator):
            nn.init.normal_(e.weight, std=0.05)
            with torch.no_grad():
                e.weight[0].zero_()
        if self.user_id is not None:
            nn.init.normal_(self.user_id.weight, std=0.05)
        item_dim = id_dim + topic_dim + creator_dim
        user_in = item_dim + max(user_id_dim, 0) + 8 * len(user_cardinalities)
        self.video_mlp = _mlp(item_dim + 24, hidden, dim)
        self.user_mlp = _mlp(user_in, hidden, dim)

    def item_parts(
        self, video: torch.Tensor, topic: torch.Tensor, creator: torch.Tensor
    ) -> torch.Tensor:
        """Concatenated id/topic/creator embeddings (shared by both towers)."""
        return torch.cat([self.video_id(video), self.topic(topic), self.creator(creator)], dim=-1)

    def video_tower(
        self,
        video: torch.Tensor,
        topic: torch.Tensor,
        creator: torch.Tensor,
        duration: torch.Tensor,
        age: torch.Tensor,
        popularity: torch.Tensor,
    ) -> torch.Tensor:
        """``int64[b]`` codes -> ``float32[b, dim]`` unit vectors."""
        x = torch.cat(
            [
                self.item_parts(video, topic, creator),
                self.duration(duration),
                self.age(age),
                self.popularity(popularity),
            ],
            dim=-1,
        )
        return F.normalize(self.video_mlp(x), dim=-1)

    def user_tower(
        self,
        user_bucket: torch.Tensor,
        feats: torch.Tensor,
        hist_video: torch.Tensor,
        hist_topic: torch.Tensor,
        hist_creator: torch.Tensor,
    ) -> torch.Tensor:
        """Hashed user ids ``[b]``, attribute codes ``[b, f]``, history codes ``[b, h]`` (0 =
        padding) -> ``float32[b, dim]`` unit vectors. An empty history pools to zeros."""
        parts = self.item_parts(hist_video, hist_topic, hist_creator)  # (b, h, e)
        mask = (hist_video > 0).unsqueeze(-1).to(parts.dtype)
        pooled = (parts * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        xs = [pooled]
        if self.user_id is not None:
            xs.append(self.user_id(user_bucket))
        xs += [emb(feats[:, j]) for j, emb in enumerate(self.user_feats)]
        return F.normalize(self.user_mlp(torch.cat(xs, dim=-1)), dim=-1)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    """One hidden ReLU layer, or a linear map when ``hidden`` is 0."""
    if hidden == 0:
        return nn.Linear(n_in, n_out)
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))


def in_batch_softmax_loss(
    users: torch.Tensor,
    videos: torch.Tensor,
    video_codes: torch.Tensor,
    log_q: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Mean cross-entropy of row ``i`` picking its own video among the batch's videos.

    ``users``/``videos`` ``[b, dim]`` unit vectors (row ``i`` is a positive pair),
    ``video_codes`` ``int64[b]`` (to mask duplicates), ``log_q`` ``[b]`` the log sampling
    probability of each row's video (logQ correction, Yi et al. 2019).
    """
    logits = users @ videos.T / temperature - log_q.unsqueeze(0)
    same = video_codes.unsqueeze(0) == video_codes.unsqueeze(1)
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(len(users))
    return F.cross_entropy(logits, target)
