"""The student's CUDA path: bf16 training and GPU reading, on a model built from a config.

Builds a small BERT with random weights (nothing downloaded; the tokenizer is a local folder,
by default the bundled MiniLM's), makes a synthetic SQuAD set whose answers are learnable
("The capital of Veltria is Oskar." / "What is the capital of Veltria?"), trains it with
`train_reader` (which picks bf16 on GPUs that support it) and reads the validation questions with
the `Reader` on the same device. Prints precision, device, seconds, questions/s and F1.

    python benchmarks/train_gpu.py [--tokenizer DIR] [--questions 2000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

RELATIONS = [
    ("The capital of {x} is {y}.", "What is the capital of {x}?"),
    ("{x} was founded by {y}.", "Who founded {x}?"),
    ("The river that runs through {x} is called {y}.", "What is the river that runs through {x} called?"),
    ("The oldest bridge in {x} was designed by {y}.", "Who designed the oldest bridge in {x}?"),
]


def _name(rng: random.Random) -> str:
    syllables = ["ka", "vel", "tri", "os", "mar", "lin", "dor", "sen", "qua", "ri", "bel", "tho"]
    return "".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))).capitalize()


def synthetic_squad(n: int, seed: int) -> dict:
    """Paragraphs of four facts each; one question per fact."""
    rng = random.Random(seed)
    paragraphs = []
    for p in range(n // len(RELATIONS)):
        sentences, qas = [], []
        for r, (fact, question) in enumerate(RELATIONS):
            x, y = _name(rng), _name(rng)
            sentence = fact.format(x=x, y=y)
            start = len(" ".join(sentences)) + (1 if sentences else 0) + sentence.rindex(y)  # y comes last
            sentences.append(sentence)
            qas.append({"id": f"{p}-{r}", "question": question.format(x=x), "answers": [{"text": y, "answer_start": start}]})
        context = " ".join(sentences)
        for qa in qas:
            a = qa["answers"][0]
            assert context[a["answer_start"] : a["answer_start"] + len(a["text"])] == a["text"]
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}


def main() -> None:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    from distillqa.config import TrainConfig
    from distillqa.student.evaluate import score_reader
    from distillqa.dataset.squad import squad_examples
    from distillqa.student.reader import Reader
    from distillqa.student.train import train_reader

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: bundled MiniLM)")
    parser.add_argument("--questions", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=3)
    args = parser.parse_args()
    if args.tokenizer is None:
        from distillqa.models import bundled_encoder

        args.tokenizer = bundled_encoder()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=256, num_hidden_layers=4,
                            num_attention_heads=4, intermediate_size=1024)
        torch.manual_seed(0)
        BertForQuestionAnswering(config).save_pretrained(work / "base")
        tokenizer.save_pretrained(work / "base")
        train, validation = synthetic_squad(args.questions, 1), synthetic_squad(max(40, args.questions // 10), 2)
        (work / "train.json").write_text(json.dumps(train))
        (work / "validation.json").write_text(json.dumps(validation))
        cfg = TrainConfig(student=str(work / "base"), epochs=args.epochs, learning_rate=1e-4, batch_size=32)
        summary = train_reader(work / "train.json", work / "validation.json", work / "student", cfg, quiet=True)
        log = json.loads((work / "student" / "training_log.json").read_text())
        reader = Reader.load(work / "student")
        examples = squad_examples(validation)
        started = time.perf_counter()
        scores = score_reader(reader, examples, batch_size=64)
        read_s = time.perf_counter() - started
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"device: {device}; reader device: {reader.device}")
    print(f"precision: {log['precision']}; parameters: {summary['parameters']}")
    print(f"train: {summary['train_questions']} questions, {summary['epochs']} epochs, {summary['seconds']} s")
    print(f"validation: EM {scores['exact_match']:.1f} F1 {scores['f1']:.1f} over {scores['n']} questions, "
          f"{len(examples) / read_s:.0f} questions/s")


if __name__ == "__main__":
    main()
