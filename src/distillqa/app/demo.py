"""`python -m distillqa.app.demo RUN`: after `make demo`, say where things are and ask one question.

The question is one the teacher wrote for the validation split (the student never trained on
it), asked the way a user would: without a passage, through retrieval and the student.
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from distillqa.io import read_json
from distillqa.layout import REPORT_MD, STUDENT, VALIDATION
from distillqa.records import confidence_words


def main(root: Path) -> None:
    from distillqa.app.ask import Asker

    console = Console()
    report = read_json(root / "report.json")
    ev = report["evaluation"]
    console.print(f"[bold]model[/bold]:  {root / STUDENT}")
    console.print(f"[bold]report[/bold]: {root / REPORT_MD}")
    for name in ("baseline", "distilled"):
        scores = ev.get(name) or {}
        console.print(f"  {name:9s} EM {scores.get('exact_match', 0):5.1f}  F1 {scores.get('f1', 0):5.1f}")
    qas = [qa for art in read_json(root / VALIDATION)["data"] for p in art["paragraphs"] for qa in p["qas"]]
    question = qas[0]["question"] if qas else "What is this document about?"
    asker = Asker(root)
    answers = asker.ask(question, top_k=1)
    console.print(f"\n[bold]example question[/bold]: {question}")
    if answers:
        a = answers[0]
        words, colour = confidence_words(a["confidence"], asker.not_found_below)
        console.print(
            f"[bold]answer[/bold]: {a['answer']}  ([{colour}]{words}, {a['confidence']:.0%}[/{colour}], {a['document']}, page {a['page']})"
        )
    else:
        console.print("[bold]answer[/bold]: (none found)")
    console.print(f'\nAsk your own: .venv/bin/distillqa ask {root} "your question"   or   .venv/bin/distillqa serve {root}')


if __name__ == "__main__":
    main(Path(sys.argv[1]))
