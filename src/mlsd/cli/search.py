"""``mlsd search convert | evaluate``: the video-search system's test-collection tools (issue
20, first part: lexical retrieval; dense retrieval, fusion and learning to rank come next)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlsd.cli._common import console, user_errors

search_app = typer.Typer(
    rich_markup_mode="markdown",
    no_args_is_help=True,
    help="Search over a document collection: convert TREC collections, evaluate retrievers.",
)


@search_app.command("convert")
@user_errors
def convert(
    docs: Annotated[Path, typer.Option(help="TREC documents (<DOC><DOCNO>id</DOCNO> ...).")],
    topics: Annotated[Path, typer.Option(help="TREC topics (<top><num>..<title>..</top>).")],
    qrels: Annotated[Path, typer.Option(help="TREC qrels: query_id 0 doc_id relevance.")],
    out: Annotated[Path, typer.Option(help="Output directory.")],
) -> None:
    """Write a TREC collection as docs.jsonl, queries.jsonl and qrels.txt (the files
    `mlsd search evaluate` reads: JSON lines with `id` and `text`; TREC qrels)."""
    from mlsd.data.trec import convert as run

    paths = run(docs, topics, qrels, out)
    for name, p in paths.items():
        console.print(f"{name}: {p}", markup=False)


@search_app.command("evaluate")
@user_errors
def evaluate(
    docs: Annotated[Path, typer.Option(help="Documents: JSON lines with id and text.")],
    queries: Annotated[Path, typer.Option(help="Queries: JSON lines with id and text.")],
    qrels: Annotated[Path, typer.Option(help="Judgements: TREC qrels.")],
    k: Annotated[int, typer.Option(min=1, max=10_000, help="Documents ranked per query.")] = 100,
    out: Annotated[
        Path | None,
        typer.Option(help="TREC run file to write: query_id Q0 doc_id rank score tag."),
    ] = None,
    tag: Annotated[str, typer.Option(help="The run's tag (last column).")] = "mlsd-bm25",
) -> None:
    """Rank the documents for every query with BM25 and score the ranking against the
    judgements: nDCG@10, MRR@10, Recall@100 and MAP@100 (queries with a relevant document)."""
    from rich.table import Table

    from mlsd.data.trec import read_collection
    from mlsd.evaluation.ir import ir_metrics
    from mlsd.retrieval.lexical import BM25Index

    c = read_collection(docs, queries, qrels)
    index = BM25Index(list(c.docs), [f.get("text", "") for f in c.docs.values()])
    qids = list(c.queries)
    ranked, scores = index.search([c.queries[q] for q in qids], k)
    run = dict(zip(qids, ranked, strict=True))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w") as f:
            for i, q in enumerate(qids):
                for r, d in enumerate(ranked[i]):
                    f.write(f"{q} Q0 {d} {r + 1} {scores[i, r]:.6f} {tag}\n")
        tmp.replace(out)
    m = ir_metrics(run, c.qrels)
    t = Table("retriever", "nDCG@10", "MRR@10", "Recall@100", "MAP@100", "queries")
    t.add_row("bm25", *(f"{m[x]:.4f}" for x in ("ndcg@10", "mrr@10", "recall@100", "map@100")),
              f"{int(m['queries'])}")  # fmt: skip
    console.print(t)
    if out is not None:
        console.print(f"run: {out}", markup=False)
