"""Test collections for search: TREC files in, the bring-your-own-collection files out.

The collection contract that ``mlsd search`` reads (and scripts rely on):

- documents: JSON lines, ``{"id": str, "text": str}`` plus optional fields (``title``, ...);
- queries: JSON lines, ``{"id": str, "text": str}``;
- qrels: TREC, one ``query_id 0 doc_id relevance`` line per judged pair (relevance an
  integer, 0 for judged non-relevant).

:func:`read_trec_docs`, :func:`read_trec_topics` and :func:`read_qrels` parse the classic TREC
formats (``<DOC><DOCNO>id</DOCNO> text </DOC>`` blocks; ``<top><num>id</num><title> text
</title></top>`` blocks; qrels lines); :func:`convert` turns a collection such as Vaswani's
into the contract's files. Every parser raises :class:`~mlsd.errors.DataError`
naming the file and the line of the first problem; nothing is dropped silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlsd.errors import DataError

__all__ = ["Collection", "convert", "read_collection", "read_jsonl", "read_qrels",
           "read_trec_docs", "read_trec_topics", "write_collection"]  # fmt: skip

_DOC = re.compile(r"<DOC>(.*?)</DOC>", re.S | re.I)
_DOCNO = re.compile(r"<DOCNO>\s*(.*?)\s*</DOCNO>", re.S | re.I)
_TOP = re.compile(r"<top>(.*?)</top>", re.S | re.I)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(.*?)\s*(?:</num>|\n)", re.S | re.I)
_TITLE = re.compile(r"<title>\s*(.*?)\s*(?:</title>|<desc>|<narr>|$)", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")


@dataclass
class Collection:
    """Documents (id -> fields, ``text`` among them), queries (id -> text) and judgements
    (query id -> doc id -> relevance)."""

    docs: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="strict")
    except OSError as e:
        raise DataError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None


def read_trec_docs(path: str | Path) -> dict[str, dict[str, str]]:
    """Documents of a TREC file: DOCNO -> ``{"text": ...}`` (tags stripped, whitespace
    collapsed). A block without a DOCNO, or a DOCNO seen twice, raises naming the line."""
    text = _read(Path(path))
    docs: dict[str, dict[str, str]] = {}
    for m in _DOC.finditer(text):
        body = m.group(1)
        no = _DOCNO.search(body)
        if no is None or not no.group(1):
            raise DataError(f"{path}: line {_line_of(text, m.start())}: <DOC> without a DOCNO")
        doc_id = no.group(1)
        if doc_id in docs:
            raise DataError(
                f"{path}: line {_line_of(text, m.start())}: DOCNO {doc_id!r} seen twice"
            )
        content = _TAG.sub(" ", body[: no.start()] + body[no.end() :])
        docs[doc_id] = {"text": " ".join(content.split())}
    if not docs:
        raise DataError(f"{path}: no <DOC> blocks; expected TREC documents")
    return docs


def read_trec_topics(path: str | Path) -> dict[str, str]:
    """Queries of a TREC topics file: num -> title text (whitespace collapsed)."""
    text = _read(Path(path))
    out: dict[str, str] = {}
    for m in _TOP.finditer(text):
        body, line = m.group(1), _line_of(text, m.start())
        num, title = _NUM.search(body), _TITLE.search(body)
        if num is None or not num.group(1) or title is None:
            raise DataError(f"{path}: line {line}: <top> without <num> and <title>")
        if num.group(1) in out:
            raise DataError(f"{path}: line {line}: topic {num.group(1)!r} seen twice")
        out[num.group(1)] = " ".join(_TAG.sub(" ", title.group(1)).split())
    if not out:
        raise DataError(f"{path}: no <top> blocks; expected TREC topics")
    return out


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """Judgements of a TREC qrels file (``query_id iteration doc_id relevance`` per line)."""
    out: dict[str, dict[str, int]] = {}
    for i, line in enumerate(_read(Path(path)).splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4:
            raise DataError(
                f"{path}: line {i}: {len(parts)} fields; expected 'query_id 0 doc_id relevance'"
            )
        try:
            rel = int(parts[3])
        except ValueError:
            raise DataError(f"{path}: line {i}: relevance {parts[3]!r} is not an integer") from None
        out.setdefault(parts[0], {})[parts[2]] = rel
    if not out:
        raise DataError(f"{path}: no judgements")
    return out


def read_jsonl(path: str | Path, what: str) -> Iterator[dict[str, str]]:
    """Records of a JSON-lines file, each with string ``id`` and ``text``; raises naming the
    line of the first that is not one (``what``: "document" or "query", for the message)."""
    for i, line in enumerate(_read(Path(path)).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}: line {i}: not JSON ({e})") from None
        if not isinstance(r, dict) or not isinstance(r.get("text"), str) or "id" not in r:
            raise DataError(f"{path}: line {i}: a {what} needs an 'id' and a string 'text'")
        r["id"] = str(r["id"])
        yield r


def read_collection(docs: str | Path, queries: str | Path, qrels: str | Path | None) -> Collection:
    """A collection in the contract's files (module docstring); duplicate ids raise."""
    d: dict[str, dict[str, str]] = {}
    for r in read_jsonl(docs, "document"):
        if r["id"] in d:
            raise DataError(f"{docs}: document id {r['id']!r} appears twice")
        d[r["id"]] = {k: str(v) for k, v in r.items() if k != "id" and v is not None}
    q: dict[str, str] = {}
    for r in read_jsonl(queries, "query"):
        if r["id"] in q:
            raise DataError(f"{queries}: query id {r['id']!r} appears twice")
        q[r["id"]] = r["text"]
    return Collection(d, q, read_qrels(qrels) if qrels is not None else {})


def write_collection(c: Collection, out: str | Path) -> dict[str, Path]:
    """``docs.jsonl``, ``queries.jsonl`` and ``qrels.txt`` of ``c`` into ``out``."""
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    paths = {"docs": o / "docs.jsonl", "queries": o / "queries.jsonl", "qrels": o / "qrels.txt"}
    with paths["docs"].open("w") as f:
        for i, fields in c.docs.items():
            f.write(json.dumps({"id": i, **fields}) + "\n")
    with paths["queries"].open("w") as f:
        for i, text in c.queries.items():
            f.write(json.dumps({"id": i, "text": text}) + "\n")
    with paths["qrels"].open("w") as f:
        for q, rels in c.qrels.items():
            for d, r in rels.items():
                f.write(f"{q} 0 {d} {r}\n")
    return paths


def convert(
    docs: str | Path, topics: str | Path, qrels: str | Path, out: str | Path
) -> dict[str, Path]:
    """A TREC collection (documents, topics, qrels) as the contract's files in ``out``. Topic
    titles in capitals (Vaswani's) are kept as given: matching lower-cases them."""
    return write_collection(Collection(read_trec_docs(docs), read_trec_topics(topics),
                                       read_qrels(qrels)), out)  # fmt: skip
