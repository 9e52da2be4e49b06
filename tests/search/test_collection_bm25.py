"""Search over a test collection: TREC parsing with located errors, IR metrics on known
cases, and BM25 on the real Vaswani collection against the figures measured with bm25s
outside the project (nDCG@10 0.3535, MAP@100 0.188)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.trec import read_collection, read_qrels, read_trec_docs, read_trec_topics
from mlsd.errors import DataError
from mlsd.evaluation.ir import ir_metrics, per_query
from mlsd.retrieval.lexical import BM25Index

VASWANI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vaswani"


def test_metrics_on_hand_computed_cases() -> None:
    rels = {"a": 1, "b": 2, "c": 0}
    # b (gain 2) at rank 2, a (gain 1) at rank 3: DCG 2/log2(3) + 1/2; ideal 2 + 1/log2(3)
    m = per_query(["x", "b", "a"], rels, 10)
    assert m["ndcg"] == pytest.approx((2 / 1.5849625 + 0.5) / (2 + 1 / 1.5849625), rel=1e-6)
    assert m["mrr"] == 0.5 and m["recall"] == 1.0
    assert m["ap"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert per_query([], rels, 10) == {"ndcg": 0.0, "mrr": 0.0, "recall": 0.0, "ap": 0.0}
    # a query without relevant documents is left out of the means, one unanswered scores 0
    got = ir_metrics({"q1": ["b"]}, {"q1": {"b": 1}, "q2": {"z": 1}, "q3": {"y": 0}})
    assert got["queries"] == 2 and got["ndcg@10"] == 0.5


def test_trec_errors_name_the_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "docs.trec"
    p.write_text("<DOC>\n<DOCNO>1</DOCNO> a\n</DOC>\n<DOC>\nno number\n</DOC>\n")
    with pytest.raises(DataError, match=r"docs\.trec: line 4: <DOC> without a DOCNO"):
        read_trec_docs(p)
    p.write_text("<DOC><DOCNO>1</DOCNO> a</DOC>\n<DOC><DOCNO>1</DOCNO> b</DOC>\n")
    with pytest.raises(DataError, match="seen twice"):
        read_trec_docs(p)
    q = tmp_path / "qrels"
    q.write_text("1 0 7 1\n1 0 8\n")
    with pytest.raises(DataError, match=r"qrels: line 2: 3 fields"):
        read_qrels(q)
    j = tmp_path / "docs.jsonl"
    j.write_text('{"id": 1, "text": "a"}\n{"id": 2}\n')
    with pytest.raises(DataError, match=r"docs\.jsonl: line 2: a document needs"):
        read_collection(j, j, None)


def test_bm25_answers_odd_queries_sanely() -> None:
    idx = BM25Index(["1", "2", "3"], ["microwave ovens", "dielectric liquids", "the end"])
    got, scores = idx.search(["", "the of", "zzz", "MICROWAVE!!", "liquids 🙂"], 5)
    assert got[:3] == [[], [], []]
    assert got[3] == ["1"] and got[4] == ["2"] and scores[3, 0] > 0 == scores[3, 1]
    with pytest.raises(DataError):
        BM25Index([], [])


@pytest.mark.realdata
def test_bm25_on_vaswani_matches_the_reference_figures(tmp_path: Path) -> None:
    if not VASWANI.exists():
        pytest.skip("../shared/data/vaswani is not here")
    docs = read_trec_docs(VASWANI / "corpus" / "doc-text.trec")
    topics = read_trec_topics(VASWANI / "query-text.trec")
    assert (len(docs), len(topics)) == (11_429, 93)
    runner = CliRunner()
    out = tmp_path / "coll"
    trec = VASWANI / "corpus" / "doc-text.trec"
    args = ["--docs", str(trec), "--topics", str(VASWANI / "query-text.trec")]
    args += ["--qrels", str(VASWANI / "qrels"), "--out", str(out)]
    r = runner.invoke(app, ["search", "convert", *args])
    assert r.exit_code == 0, r.output
    c = read_collection(out / "docs.jsonl", out / "queries.jsonl", out / "qrels.txt")
    assert sum(len(v) for v in c.qrels.values()) == 2083
    idx = BM25Index(list(c.docs), [d["text"] for d in c.docs.values()])
    ranked, _ = idx.search(list(c.queries.values()), 100)
    m = ir_metrics(dict(zip(c.queries, ranked, strict=True)), c.qrels)
    assert m["ndcg@10"] == pytest.approx(0.3535, abs=0.001)
    assert m["map@100"] == pytest.approx(0.188, abs=0.001)
    run = tmp_path / "run.tsv"
    r = runner.invoke(app, ["search", "evaluate", "--docs", str(out / "docs.jsonl"), "--queries",
                            str(out / "queries.jsonl"), "--qrels", str(out / "qrels.txt"),
                            "--out", str(run)])  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = run.read_text().splitlines()
    assert len(lines) == 93 * 100 and lines[0].split()[1] == "Q0" and lines[0].split()[3] == "1"
    assert "0.3535" in r.output
