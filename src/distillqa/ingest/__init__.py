"""The ingest stage: input files -> RUN/documents.jsonl (one normalised document per file).

Every file is read into memory before anything is written, so one bad file stops the run
with nothing half-done (or, with `ingest.skip_bad`, is skipped with a warning). Each format
has its reader (pdf, office, markup, text) returning raw paragraphs per page or section;
`normalize.assemble` turns them into the document text and its page spans. Many files are read
by worker processes (`ingest.workers`, `distillqa.pool`): same documents, order and errors.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

from distillqa.config import Config, IngestConfig
from distillqa.errors import DistillqaError
from distillqa.ingest.markup import read_html, read_markdown
from distillqa.ingest.normalize import Extracted, assemble
from distillqa.ingest.office import read_docx
from distillqa.ingest.pdf import read_pdf
from distillqa.ingest.plaintext import read_txt
from distillqa.io import write_jsonl
from distillqa.layout import CONFIG, DOCUMENTS, MANIFEST, RunFolder
from distillqa.pool import ordered_map
from distillqa.text import ENDS_WITH_STOP

log = logging.getLogger("distillqa")

FORMATS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "txt",
}
_READERS: dict[str, Callable[[Path, bytes, IngestConfig], Extracted]] = {
    "pdf": read_pdf,
    "docx": read_docx,
    "html": read_html,
    "markdown": read_markdown,
    "txt": read_txt,
}
_SUPPORTED = ", ".join(sorted(FORMATS))
_GLOB_CHARS = re.compile(r"[*?\[]")



def expand_paths(args: list[str], run_folder: Path | None = None) -> list[Path]:
    """Resolve files, folders (searched recursively) and globs into the documents to read:
    in argument order, each folder's and glob's files sorted, each file once, paths absolute.
    Hidden files and folders and Office lock files (~$name.docx) inside folders are left out,
    and so are run folders (this run's `run_folder` and any other): the pipeline never reads its
    own report, log or model card as a document. Naming a file inside `run_folder` is an error.

    Each argument must yield at least one supported file: a missing path, a glob matching
    nothing, a folder without documents or an unsupported file named explicitly is an error,
    because a silently ignored argument is almost always a typo.
    """
    own = run_folder.resolve() if run_folder is not None else None
    found: list[Path] = []
    for arg in args:
        path = Path(arg).expanduser()
        if own is not None and path.exists() and path.resolve().is_relative_to(own):
            raise DistillqaError(f"{arg} is inside the run folder {run_folder}: the pipeline's own files are not documents; give the documents' folder")
        if path.is_file():
            if path.suffix.lower() not in FORMATS:
                raise DistillqaError(f"{arg}: unsupported file type {path.suffix or '(none)'!r}: give {_SUPPORTED} files")
            files = [path]
        elif path.is_dir():
            files = _documents_in(path, own)
            if not files:
                raise DistillqaError(f"{arg}: no {_SUPPORTED} files in this folder")
        elif _GLOB_CHARS.search(arg):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            if not matches:
                raise DistillqaError(f"{arg}: the pattern matches no files")
            files = [f for m in matches for f in (_documents_in(m, own) if m.is_dir() else [m]) if _supported(f)]
            files = [f for f in files if _run_folder_of(f.resolve(), own) is None]
            if not files:
                raise DistillqaError(f"{arg}: the pattern matches no {_SUPPORTED} files")
        else:
            raise DistillqaError(f"{arg}: no such file or folder")
        found.extend(f.resolve() for f in files)
    return list(dict.fromkeys(found))  # the same file named twice is read once


def _supported(path: Path) -> bool:
    """A document we can read, not a hidden file or an Office lock file (~$name.docx)."""
    return path.is_file() and path.suffix.lower() in FORMATS and not path.name.startswith((".", "~$"))


def _is_run_folder(folder: Path) -> bool:
    return (folder / MANIFEST).is_file() and (folder / CONFIG).is_file()


def _run_folder_of(path: Path, own: Path | None) -> Path | None:
    """The outermost folder holding `path` that is this run's (`own`) or any run folder, else None."""
    return next((q for q in reversed(path.parents) if q == own or _is_run_folder(q)), None)


def _documents_in(folder: Path, own: Path | None = None) -> list[Path]:
    """The documents in a folder tree, leaving out hidden files and folders and run folders."""
    found, left_out = [], set()
    for p in sorted(folder.rglob("*")):
        if not _supported(p) or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        run = _run_folder_of(p.resolve(), own)
        if run is not None:
            left_out.add(run)
            continue
        found.append(p)
    for run in sorted(left_out):
        log.warning("left out %s: it is a distillqa run folder, not documents", run)
    return found


def ingest_file(path: Path, cfg: IngestConfig) -> dict:
    """Read one file into a documents.jsonl record (see docs/design.md); DistillqaError if unusable."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DistillqaError(f"{path}: unsupported file type {path.suffix!r}: give {_SUPPORTED} files")
    if not path.is_file():
        raise DistillqaError(f"{path}: file not found (moved or deleted since the run started?): run `distillqa ingest` again")
    size_mb = path.stat().st_size / 2**20
    if size_mb > cfg.max_file_mb:
        raise DistillqaError(
            f"{path}: {size_mb:.3g} MB is over ingest.max_file_mb={cfg.max_file_mb:g}: split the file or raise the limit (--set ingest.max_file_mb=N)"
        )
    data = path.read_bytes()
    if not data.strip():
        raise DistillqaError(f"{path}: the file is empty: remove it from the inputs")
    try:
        extracted = _READERS[fmt](path, data, cfg)
    except DistillqaError:
        raise
    except Exception as e:  # a parser choking on a malformed file: name the file, keep the run tidy
        log.info("reading %s failed", path, exc_info=True)  # the traceback, for log.txt
        reason = (str(e).splitlines() or [""])[0]
        raise DistillqaError(f"{path}: cannot read this {fmt} file ({type(e).__name__}: {reason}): check that it opens, or pass --skip-bad") from e
    text, pages = assemble(extracted.pages)
    if not text:
        raise DistillqaError(f"{path}: no text found in the file: remove it from the inputs")
    sha256 = hashlib.sha256(data).hexdigest()
    return {
        "doc_id": f"{_slug(path.stem)}-{sha256[:8]}",
        "source": str(path.resolve()),
        "sha256": sha256,
        "format": fmt,
        "title": _title(extracted.title, text, path),
        "text": text,
        "pages": pages,
    }


def ingest_files(paths: list[Path], cfg: IngestConfig, quiet: bool = True) -> tuple[list[dict], int]:
    """Read every file into memory; returns (documents, number skipped).

    A bad file raises DistillqaError unless `cfg.skip_bad`, which logs it and goes on. A file
    with the same content as an earlier one is skipped (with a warning) in any case: it would
    only duplicate questions. Having no document left at the end is an error.
    """
    documents: list[dict] = []
    seen: dict[str, str] = {}
    skipped = 0
    with ordered_map(
        _read, paths, setup=cfg.model_copy, workers=cfg.workers, description="ingest", quiet=quiet, setting="ingest.workers"
    ) as results:
        for path, doc in zip(paths, results):
            if isinstance(doc, DistillqaError):
                if not cfg.skip_bad:
                    raise doc
                log.warning("skipped: %s", doc)
                skipped += 1
                continue
            if doc["sha256"] in seen:
                log.warning("skipped: %s has the same content as %s", path, seen[doc["sha256"]])
                skipped += 1
                continue
            seen[doc["sha256"]] = str(path)
            documents.append(doc)
    if not documents:
        raise DistillqaError(f"none of the {len(paths)} input files could be read: see the warnings in the log")
    return documents, skipped


def _read(cfg: IngestConfig, path: Path) -> dict | DistillqaError:
    """`ingest_file` with its error returned, not raised: whether a bad file stops the run or is
    skipped is decided where the results arrive in order, whichever process read it."""
    try:
        return ingest_file(path, cfg)
    except DistillqaError as e:
        return e


def run_stage(run: RunFolder, cfg: Config) -> dict:
    documents, skipped = ingest_files(run.input_files(), cfg.ingest, quiet=run.quiet)
    write_jsonl(run.path(DOCUMENTS), documents)
    return {
        "documents": len(documents),
        "pages": sum(len(d["pages"]) for d in documents),
        "characters": sum(len(d["text"]) for d in documents),
        "skipped": skipped,
    }


def _slug(stem: str) -> str:
    ascii_stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_stem.lower()).strip("-") or "document"


def _title(found: str | None, text: str, path: Path) -> str:
    """The file's own title, else a short first paragraph that reads like one, else the file name."""
    if found:
        return found
    first = text.split("\n\n", 1)[0]
    if len(first) <= 100 and not ENDS_WITH_STOP.search(first):
        return first
    return re.sub(r"[_\s]+", " ", path.stem).strip() or path.name
