"""Zero-shot tasks of the paper (METHOD.md section 5): readers for local files and Hub datasets, in one format.

Each task reads either a local file (the formats of ``shared/data/eval``; see ``LOCAL_FILES``) or a Hub dataset
(``HUB_DATASETS``) into a list of examples:

- ``MultipleChoiceExample``: one (context, continuation) pair per choice; the continuation is scored given its
  context. PIQA, SIQA, HellaSwag share one context; Winogrande puts each option into the context and scores the
  shared rest of the sentence (partial scoring, as lm-evaluation-harness does).
- ``CompletionExample``: LAMBADA, the context and the last word to generate.
- ``InfillingExample``: ROCStories, sentences 1-2 (prefix), 3 (to generate) and 4-5 (suffix).
- ``MathExample``: GSM8K, the question and the reference answer ("... #### n").
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable

MULTIPLE_CHOICE_TASKS = ("piqa", "siqa", "winogrande", "hellaswag")
GENERATION_TASKS = ("lambada", "rocstories", "gsm8k")
TASK_NAMES = MULTIPLE_CHOICE_TASKS + GENERATION_TASKS
TASK_ALIASES = {"socialiqa": "siqa", "social_i_qa": "siqa", "story_cloze": "rocstories", "lambada_openai": "lambada"}

# file name inside --data-dir (the layout of shared/data/eval)
LOCAL_FILES = {
    "piqa": "piqa_valid.jsonl",
    "siqa": "socialiqa_dev.jsonl",
    "winogrande": "winogrande_dev.jsonl",
    "hellaswag": "hellaswag_val.jsonl",
    "lambada": "lambada_test_plain_text.txt",
    "rocstories": "cloze_test_val__spring2016.csv",
    "gsm8k": os.path.join("gsm8k", "test.jsonl"),
}
# (Hub dataset id, config, split) used when no local file is given: the datasets lm-evaluation-harness 0.4 reads
# (LSDSem/story_cloze needs its files downloaded by hand; pass them as rocstories=FILE instead)
HUB_DATASETS = {
    "piqa": ("baber/piqa", None, "validation"),
    "siqa": ("lighteval/siqa", None, "validation"),
    "winogrande": ("allenai/winogrande", "winogrande_xl", "validation"),
    "hellaswag": ("Rowan/hellaswag", None, "validation"),
    "lambada": ("EleutherAI/lambada_openai", "default", "test"),
    "rocstories": ("LSDSem/story_cloze", "2016", "validation"),
    "gsm8k": ("openai/gsm8k", "main", "test"),
}


@dataclass
class MultipleChoiceExample:
    choices: list[tuple[str, str]]  # (context, continuation) per choice
    label: int

    def __post_init__(self):
        if len(self.choices) < 2:
            raise ValueError(f"a multiple-choice example needs >= 2 choices, got {len(self.choices)}")
        if not 0 <= self.label < len(self.choices):
            raise ValueError(f"label {self.label} is not one of the {len(self.choices)} choices")


@dataclass
class CompletionExample:
    context: str
    target: str  # the word to generate (no leading space)


@dataclass
class InfillingExample:
    prefix: str  # sentences 1-2
    middle: str  # sentence 3, to generate
    suffix: str  # sentences 4-5


@dataclass
class MathExample:
    question: str
    answer: str  # full reference solution
    target: str  # the text after the last "####", commas removed


def canonical_task_name(name: str) -> str:
    key = name.strip().lower()
    key = TASK_ALIASES.get(key, key)
    if key not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return key


def parse_task_list(text: str) -> list[str]:
    """``"piqa,siqa=path/to/file.jsonl"`` -> task specs with canonical names, in order, without duplicates.

    A spec is a task name, or ``name=source`` where source is a local file or a Hub dataset id.
    """
    specs = []
    for part in text.split(","):
        if part.strip():
            name, sep, source = part.strip().partition("=")
            specs.append(canonical_task_name(name) + sep + source.strip())
    if not specs:
        raise ValueError("no task given")
    return list(dict.fromkeys(specs))


def task_spec_name(spec: str) -> str:
    """The canonical task name of a spec ``name`` or ``name=source``."""
    return canonical_task_name(spec.partition("=")[0])


def gsm8k_prompt(question: str, chat: bool) -> str | list[dict]:
    """The GSM8K prompt, one rule for evaluation and the SFT recipe: a user turn for a chat template, else
    "Question: ...\nAnswer:"."""
    return [{"role": "user", "content": question}] if chat else f"Question: {question}\nAnswer:"


def gsm8k_final_answer(text: str) -> str | None:
    """The text after the last "####" (first line of it), commas removed; None when there is no "####"."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().split("\n", 1)[0]
    return answer.replace(",", "").strip()


# ---- record -> example converters (accept the local and the Hub field names) ----


def _piqa(record: dict) -> MultipleChoiceExample:
    context = f"Question: {record['goal'].strip()}\nAnswer:"
    return MultipleChoiceExample(
        [(context, " " + record["sol1"].strip()), (context, " " + record["sol2"].strip())], int(record["label"])
    )


def _siqa(record: dict) -> MultipleChoiceExample:
    context = f"Question: {record['context'].strip()} {record['question'].strip()}\nAnswer:"
    answers = [record["answerA"], record["answerB"], record["answerC"]]
    if "correct" in record:  # local dev file: letter
        label = "ABC".index(str(record["correct"]).strip().upper())
    else:  # Hub: "1".."3"
        label = int(record["label"]) - 1
    return MultipleChoiceExample([(context, " " + a.strip()) for a in answers], label)


def _winogrande(record: dict) -> MultipleChoiceExample:
    sentence = record["sentence"]
    if sentence.count("_") != 1:
        raise ValueError(f"winogrande sentence must hold exactly one '_': {sentence!r}")
    before, after = sentence.split("_")
    # the option goes into the context; the rest of the sentence is what gets scored
    continuation = " " + after.strip()
    choices = [((before + record[key]).strip(), continuation) for key in ("option1", "option2")]
    return MultipleChoiceExample(choices, int(record["answer"]) - 1)


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(record: dict) -> MultipleChoiceExample:
    ctx = record["ctx_a"] + " " + record["ctx_b"].capitalize()
    context = _hellaswag_clean(record["activity_label"] + ": " + ctx)
    endings = record["endings"]
    if isinstance(endings, str):
        endings = json.loads(endings)
    return MultipleChoiceExample([(context, " " + _hellaswag_clean(e)) for e in endings], int(record["label"]))


def _lambada(text: str) -> CompletionExample:
    text = text.strip()
    if " " not in text:
        raise ValueError(f"a LAMBADA passage needs a context and a last word: {text!r}")
    context, target = text.rsplit(" ", 1)
    return CompletionExample(context, target)


def _rocstories(record: dict) -> InfillingExample:
    if "InputSentence1" in record:  # Story Cloze CSV: 4 sentences + the right ending as sentence 5
        sentences = [record[f"InputSentence{i}"] for i in range(1, 5)]
        sentences.append(record[f"RandomFifthSentenceQuiz{int(record['AnswerRightEnding'])}"])
    elif "input_sentence_1" in record:  # Hub story_cloze
        sentences = [record[f"input_sentence_{i}"] for i in range(1, 5)]
        sentences.append(record[f"sentence_quiz{int(record['answer_right_ending'])}"])
    elif "sentence5" in record:  # ROCStories corpus: five sentences
        sentences = [record[f"sentence{i}"] for i in range(1, 6)]
    else:
        raise ValueError(f"unrecognised ROCStories record with fields {sorted(record)}")
    sentences = [s.strip() for s in sentences]
    return InfillingExample(" ".join(sentences[:2]), sentences[2], " ".join(sentences[3:]))


def _gsm8k(record: dict) -> MathExample:
    target = gsm8k_final_answer(record["answer"])
    if target is None:
        raise ValueError(f"GSM8K answer without '####': {record['answer'][:80]!r}")
    return MathExample(record["question"].strip(), record["answer"], target)


CONVERTERS: dict[str, Callable] = {
    "piqa": _piqa,
    "siqa": _siqa,
    "winogrande": _winogrande,
    "hellaswag": _hellaswag,
    "lambada": lambda record: _lambada(record["text"] if isinstance(record, dict) else record),
    "rocstories": _rocstories,
    "gsm8k": _gsm8k,
}


# ---- readers ----


def _read_records(path: str) -> Iterable:
    """Records of a local file: JSON lines, a JSON list, CSV rows (dicts) or plain text lines (strings)."""
    from ..paths import check_utf8_file

    check_utf8_file(path, "eval data file")
    with open(path, encoding="utf-8", newline="" if path.endswith(".csv") else None) as handle:
        if path.endswith(".jsonl"):
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as error:
                        raise ValueError(f"{path}:{number}: not valid JSON ({error})") from None
        elif path.endswith(".json"):
            try:
                records = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
            yield from records
        elif path.endswith(".csv"):
            yield from csv.DictReader(handle)
        else:
            yield from (line.rstrip("\n") for line in handle if line.strip())


def local_task_file(task: str, data_dir: str) -> str | None:
    """The task's file inside ``data_dir`` (layout of shared/data/eval), or None if it is not there."""
    path = os.path.join(data_dir, LOCAL_FILES[canonical_task_name(task)])
    return path if os.path.isfile(path) else None


def read_task_file(task: str, path: str, limit: int | None = None) -> list:
    """Examples of ``task`` from a local file; ``limit`` keeps the first N."""
    task = canonical_task_name(task)
    if not os.path.isfile(path):
        raise ValueError(f"{task}: file not found: {path}")
    examples = []
    for number, record in enumerate(_read_records(path), 1):
        if limit is not None and len(examples) >= limit:
            break
        try:
            examples.append(CONVERTERS[task](record))
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise ValueError(f"{task}: record {number} of {path} cannot be read: {error!r}") from None
    if not examples:
        raise ValueError(f"{task}: {path} holds no example")
    return examples


def read_hub_task(
    task: str,
    dataset: str | None = None,
    config: str | None = None,
    split: str | None = None,
    limit: int | None = None,
) -> list:
    """Examples of ``task`` from a Hub dataset (default: ``HUB_DATASETS[task]``) via ``datasets.load_dataset``."""
    from datasets import load_dataset

    task = canonical_task_name(task)
    default_dataset, default_config, default_split = HUB_DATASETS[task]
    dataset = dataset or default_dataset
    if dataset != default_dataset:  # a different dataset does not share the default's config
        default_config = None
    split = split or default_split
    if limit is not None:
        split = f"{split}[:{limit}]"
    try:
        records = load_dataset(dataset, config or default_config, split=split)
    except Exception as error:  # offline, unknown id, gated dataset: say which task and dataset
        raise ValueError(f"{task}: cannot load Hub dataset {dataset!r} (split {split!r}): {error}") from error
    return [CONVERTERS[task](record) for record in records]


def load_task(task: str, data_dir: str | None = None, limit: int | None = None, **hub_kwargs) -> list:
    """Examples of ``task``: from its local file in ``data_dir`` when present, else from the Hub.

    ``task`` may also be ``name=path_or_hub_id`` to read a given file or Hub dataset.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    name, _, source = task.partition("=")
    name = canonical_task_name(name)
    if source:
        if os.path.exists(source):
            return read_task_file(name, source, limit)
        return read_hub_task(name, source, limit=limit, **hub_kwargs)
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise ValueError(f"data directory not found: {data_dir}")
        path = local_task_file(name, data_dir)
        if path is not None:
            return read_task_file(name, path, limit)
    return read_hub_task(name, limit=limit, **hub_kwargs)
