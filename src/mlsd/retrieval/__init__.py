"""Step 4a of the book, candidate generation: narrow the catalog to a few hundred videos.

Every source is a :class:`CandidateSource` (``candidates(user_ids, k) -> (ids, scores)``,
batched numpy, -1 / -inf padding) reading the user's recent watches from a shared
:class:`History` at request time:

- :class:`TwoTowerSource`: user and video towers trained with in-batch softmax and logQ
  correction; video embeddings are served from an :class:`EmbeddingIndex` (FAISS);
- :class:`CoVisitationSource`: item-to-item co-watches seeded by the recent history;
- :class:`PopularSource` (popular, trending), :class:`FreshSource`, :class:`TopicPopularSource`
  (the cold-start fallback) and :class:`CreatorPopularSource`.

:class:`MergedSource` unions them with quotas, dedup and source tags;
:func:`evaluate_retrieval` measures candidate recall@K per source and merged.
"""

from mlsd.retrieval.base import PAD, NotFittedError
from mlsd.retrieval.covisit import CoVisitationSource
from mlsd.retrieval.evaluate import RetrievalReport, SourceRecall, evaluate_retrieval
from mlsd.retrieval.history import History
from mlsd.retrieval.index import EmbeddingIndex, faiss_threads
from mlsd.retrieval.merge import MergedSource, TaggedCandidates
from mlsd.retrieval.popular import (
    CreatorPopularSource,
    FreshSource,
    PopularSource,
    TopicPopularSource,
)
from mlsd.retrieval.protocols import (
    CandidateSource,
    ItemSimilarity,
    ListScorer,
    PairScorer,
    PersistentSource,
    UserKeyed,
)
from mlsd.retrieval.sources import default_quotas, default_sources
from mlsd.retrieval.two_tower import TwoTowerSource

__all__ = [
    "PAD",
    "CandidateSource",
    "CoVisitationSource",
    "CreatorPopularSource",
    "EmbeddingIndex",
    "FreshSource",
    "History",
    "ItemSimilarity",
    "ListScorer",
    "MergedSource",
    "NotFittedError",
    "PairScorer",
    "PersistentSource",
    "PopularSource",
    "RetrievalReport",
    "SourceRecall",
    "TaggedCandidates",
    "TopicPopularSource",
    "TwoTowerSource",
    "UserKeyed",
    "default_quotas",
    "default_sources",
    "evaluate_retrieval",
    "faiss_threads",
]
