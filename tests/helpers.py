"""Helpers shared by several test files: tiny documents and runs, tiny models built from a
config, fake teachers. Fixtures built from them live in conftest.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from distillqa.config import RetrievalConfig
from distillqa.io import write_jsonl
from distillqa.models import bundled_encoder
from distillqa.retrieval.index import PassageIndex
from distillqa.teacher.base import GenerationRequest, GenerationResult


def tiny_bert(path: Path, qa_head: bool = True, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide random BERT (with a QA head, or a bare encoder like MiniLM) and the
    bundled MiniLM tokenizer, saved to `path`: loads and trains in seconds, and real enough."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering, BertModel

    tokenizer = AutoTokenizer.from_pretrained(bundled_encoder())
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=len(tokenizer),
                        initializer_range=initializer_range)
    torch.manual_seed(seed)
    (BertForQuestionAnswering if qa_head else BertModel)(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


KEYS = {"answer", "score", "confidence", "document", "page", "passage", "start", "end"}

HARBOUR = (
    "The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a granite "
    "ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.\n\n"
    "The first lamp burned whale oil and could be seen from 14 miles away. In 1902 the oil lamp was replaced "
    "by a paraffin burner designed by Thomas Quill.\n\n"
    "The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the building "
    "houses a small museum run by the Port Elwin Historical Society."
)
ORCHARD = (
    "The orchard behind the mill has twelve apple trees, planted in 1921 by the miller Ada Brook.\n\n"
    "Every October the village holds a cider festival in the orchard, with music and a pressing contest."
)


def tiny_document(doc_id: str, source: str, text: str) -> dict:
    """A documents.jsonl record with two pages split at the first paragraph break."""
    cut = text.index("\n\n")
    pages = [{"number": 1, "start": 0, "end": cut}, {"number": 2, "start": cut + 2, "end": len(text)}]
    return {"doc_id": doc_id, "source": f"/docs/{source}", "title": doc_id.title(), "text": text, "pages": pages}


TINY_DOCUMENTS = [tiny_document("harbour", "harbour.txt", HARBOUR), tiny_document("orchard", "orchard.md", ORCHARD)]


def tiny_run(root: Path, documents: list[dict] = TINY_DOCUMENTS, passage_tokens: int = 40) -> Path:
    """A run folder with documents.jsonl, index/ (bundled MiniLM embedder) and a tiny student/."""
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "documents.jsonl", documents)
    (root / "manifest.json").write_text(json.dumps({"stages": {}, "inputs": []}))
    cfg = RetrievalConfig(passage_tokens=passage_tokens, passage_overlap_tokens=8)
    PassageIndex.build(documents, cfg).save(root / "index")
    tiny_bert(root / "student")
    return root


def check_answers(answers: list[dict], top_k: int, documents: dict[str, str] | None) -> None:
    """Shape, offsets, order and distinctness that every answer list must have."""
    assert 1 <= len(answers) <= top_k
    for a in answers:
        assert set(a) == KEYS
        assert a["passage"][a["start"] : a["end"]] == a["answer"] and a["answer"].strip()
        assert 0.0 <= a["score"] <= 1.0
        if documents is None:
            assert a["document"] is None and a["page"] is None
        else:
            text = documents[a["document"]]
            assert a["passage"] in text
            offset = text.index(a["passage"]) + a["start"]
            assert a["page"] == (1 if offset < text.index("\n\n") else 2)  # the answer's own page
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    assert len({a["answer"].lower() for a in answers}) == len(answers)


class SlowEchoTeacher:
    """Deterministic and slow enough to be killed mid-run: the reply depends only on the request."""

    name = "test:slow-echo"
    supports_json_schema = False

    def __init__(self, delay_s: float = 0.05):
        self.delay_s = delay_s

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for r in requests:
            time.sleep(self.delay_s)
            prompt = r.messages[-1]["content"]
            sentence = prompt.split("\n", 1)[0].removeprefix("Sentence: ")
            words = [w for w in sentence.rstrip(".").split() if not w[0].isdigit()]
            # odd seeds give a question, even seeds garbage: retries and cloze get exercised too
            out.append(GenerationResult(f"What {' '.join(words[1:7])}?" if r.seed % 2 else "???"))
        return out

    def close(self) -> None:
        pass


def encrypted_pdf(path: Path, text: str, password: str) -> Path:
    """A one-page PDF whose text opens only with `password`."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, text)
    pdf.set_encryption(owner_password=f"owner-{password}", user_password=password)
    pdf.output(str(path))
    return path


@contextmanager
def running(app) -> Iterator[str]:
    """uvicorn serving `app` in a background thread on a free loopback port; yields its URL."""
    import uvicorn

    from distillqa.app.serve import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
