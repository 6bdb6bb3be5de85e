"""The README's stage-by-stage recipe runs, command by command, as written.

The commands are read from README.md itself (the bash block after "Each stage can also run
alone"), so the README and this test cannot drift apart. Only three things change: `RUN` becomes
a temporary folder, the input paths the first command names are created (small generated
documents at those relative paths, in a temporary working directory), and the first command gets
`--config small.yaml` (later commands reuse RUN/config.yaml) with settings that make it fast: a
tiny random student, two chunks, one epoch, no ONNX export. The teacher is a scripted fake.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import docx
import pytest
import yaml
from fpdf import FPDF
from typer.testing import CliRunner

from distillqa.cli import app
from distillqa.layout import MADE_BY
from distillqa.models import bundled_encoder
from distillqa.pipeline import STAGES
from distillqa.teacher.base import GenerationRequest, GenerationResult
from tests.helpers import tiny_bert

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "Each stage can also run alone"

PARAGRAPHS = [
    " ".join(paragraph.split())
    for paragraph in """
The harbour light of Port Elwin was built in 1854 by the engineer Margaret Hale. It stands on a
granite ledge at the mouth of the Elwin River, and its white tower is 31 metres tall.

The first lamp burned whale oil and could be seen from 14 miles away. In 1902 the oil lamp was
replaced by a paraffin burner designed by Thomas Quill.

The last keeper, Edward Vance, left the tower in 1986, when the light was automated. Today the
building houses a small museum run by the Port Elwin Historical Society.

Ships entering the harbour must pass between two reefs known as the Sisters. Before the light was
built, at least 23 ships were wrecked on the Sisters, including the schooner Albatross in 1849.
""".strip().split("\n\n")
]


def recipe() -> list[list[str]]:
    """The argument lists of the README's stage-by-stage recipe (comments dropped)."""
    text = README.read_text(encoding="utf-8")
    assert MARKER in text, f"README.md lost the sentence {MARKER!r} that introduces the recipe"
    block = re.search(r"```bash\n(.*?)```", text.split(MARKER, 1)[1], re.DOTALL)
    assert block, "no bash block after the recipe's introduction"
    commands = [shlex.split(line, comments=True) for line in block.group(1).splitlines()]
    commands = [c for c in commands if c]
    assert commands and all(c[0] == "distillqa" for c in commands), commands
    return [c[1:] for c in commands]


def make_document(path: Path, paragraphs: list[str]) -> None:
    """A small document of the kind `path`'s suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pdf":
        pdf = FPDF(format="A4")
        pdf.add_page()
        pdf.set_font("Helvetica", "", 11)
        for text in paragraphs:
            pdf.multi_cell(0, 5.5, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        pdf.output(str(path))
    elif path.suffix == ".docx":
        document = docx.Document()
        for text in paragraphs:
            document.add_paragraph(text)
        document.save(str(path))
    elif path.suffix in (".md", ".txt"):
        path.write_text("\n\n".join(paragraphs), encoding="utf-8")
    else:
        raise AssertionError(f"the README's recipe names {path}: teach make_document to write {path.suffix} files")


def make_inputs(args: list[str], cwd: Path) -> list[Path]:
    """Create the files, folders and globs that `ingest` names, relative to `cwd` (a folder gets a
    Markdown file, a glob two matching files, a file its own format); returns the files made.
    Each file gets its own title and paragraph order: ingest reads identical content once."""
    made: list[Path] = []
    for arg in [a for a in args[1:] if not a.startswith("-") and a != "RUN"]:
        if any(c in arg for c in "*?["):
            made += [cwd / re.sub(r"\*|\?|\[.*?\]", f"part{i}", arg) for i in (1, 2)]
        elif arg.endswith("/"):
            made.append(cwd / arg / "notes.md")
        else:
            made.append(cwd / arg)
    for n, path in enumerate(made):
        k = n % len(PARAGRAPHS)
        make_document(path, [f"Harbour notes, part {n + 1}", *PARAGRAPHS[k:], *PARAGRAPHS[:k]])
    return made


class FakeTeacher:
    """Writes a question for each answer-first request by putting "what" in the answer's place in
    its sentence: a weak teacher, whose questions the checks mostly reject, so the cloze fallback
    makes most pairs, as with the bundled one. Instant, and no model to load."""

    name = "fake:readme"
    supports_json_schema = False

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        return [GenerationResult(self._question(r.messages[-1]["content"])) for r in requests]

    @staticmethod
    def _question(prompt: str) -> str:
        sentence = prompt.split("\n", 1)[0].removeprefix("Sentence: ")
        answer = prompt.split("\nAnswer: ", 1)[-1].split(" (", 1)[0]
        return sentence.replace(answer, "what", 1).rstrip(" .") + "?"

    def close(self) -> None:
        pass


def test_readme_recipe_runs_command_by_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = recipe()
    assert commands[0][0] == "ingest", "the recipe starts a run with `distillqa ingest`"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("distillqa.teacher.generate.load_teacher", lambda cfg: FakeTeacher())
    inputs = make_inputs(commands[0], tmp_path)
    small = {
        "chunk": {"tokenizer": str(bundled_encoder()), "max_tokens": 48, "overlap_tokens": 8},
        "generate": {"max_chunks": 3, "answers_per_chunk": 3, "retries": 0},
        "dataset": {"context_chars": 200},  # contexts no wider than a chunk: some chunks can go to validation
        "train": {"student": str(tiny_bert(tmp_path / "tiny-student", qa_head=False)), "epochs": 1, "max_length": 128, "doc_stride": 32},
        "retrieval": {"onnx_query_encoder": False, "passage_tokens": 64, "passage_overlap_tokens": 8},
    }
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small))
    run = tmp_path / "run"
    runner = CliRunner()
    for n, args in enumerate(commands):
        args = [str(run) if a == "RUN" else a for a in args] + (["--config", "small.yaml"] if n == 0 else [])
        result = runner.invoke(app, [*args, "--quiet"])
        assert result.exit_code == 0, f"`distillqa {shlex.join(args)}` failed: {result.output}"
    assert (run / "report.md").is_file()
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert {name for name, rec in stages.items() if rec["status"] == "done"} == {s.name for s in STAGES}
    documents = [json.loads(line) for line in (run / "documents.jsonl").read_text().splitlines()]
    assert len(documents) == len(inputs) and all(d["text"] for d in documents)  # every input was read
    scored = json.loads((run / "eval.json").read_text())["validation_questions"]
    assert len(json.loads((run / "eval_predictions.json").read_text())) == scored


def test_every_stage_is_a_command_of_the_same_name(tmp_path: Path) -> None:
    """The "run `distillqa STAGE RUN` first" hints (layout.MADE_BY) name stages: each must be a
    command that opens RUN as a run folder (ingest, which makes one, is the recipe's first line)."""
    runner = CliRunner()
    for name in ({s.name for s in STAGES} | set(MADE_BY.values())) - {"ingest"}:
        result = runner.invoke(app, [name, str(tmp_path)])
        assert result.exit_code == 2, f"`distillqa {name} RUN`: {result.output}"
        assert f"{tmp_path} is not a run folder" in result.stderr, f"`distillqa {name} RUN`: {result.stderr}"
