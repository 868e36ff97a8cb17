"""lm-evaluation-harness adapter: `--model diffusion_lm` on tasks defined over local files (skipped without lm-eval)."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("lm_eval", reason="lm-eval is not installed (optional: pip install 'lm-eval>=0.4')")

from tiny import tiny_diffusion_model  # noqa: E402

CHOICE_TASK = """\
task: tiny_choice
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

GENERATE_TASK = """\
task: tiny_generate
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 4
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

DOCS = [
    {"question": "the cat sat on the", "choices": ["mat", "sky", "river"], "label": 0, "answer": "mat"},
    {"question": "the bird flew over the", "choices": ["tree", "fish"], "label": 0, "answer": "tree"},
    {"question": "one two three", "choices": ["four", "red"], "label": 0, "answer": "four"},
]


@pytest.fixture
def harness_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS))
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "tiny_choice.yaml").write_text(CHOICE_TASK.format(data=data))
    (tasks_dir / "tiny_generate.yaml").write_text(GENERATE_TASK.format(data=data))
    model, tokenizer = tiny_diffusion_model(seed=0)
    checkpoint = str(tmp_path / "checkpoint")
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    from lm_eval.tasks import TaskManager

    # the harness's own task catalogue is not needed and takes seconds to index
    return checkpoint, TaskManager(include_path=str(tasks_dir), include_defaults=False), (model, tokenizer)


def test_registered_model_answers_loglikelihood_requests(harness_setup):
    import lm_eval
    from lm_eval.api.registry import get_model

    import diffusion_lm.evaluation.lm_eval_adapter as adapter

    checkpoint, task_manager, _ = harness_setup
    assert get_model("diffusion_lm") is adapter.DiffusionLMEval

    def evaluate():
        return lm_eval.simple_evaluate(
            model="diffusion_lm",
            model_args=f"pretrained={checkpoint},mc_samples=4,seed=0",
            tasks=["tiny_choice"],
            task_manager=task_manager,
            device="cpu",
            log_samples=True,
        )

    results = evaluate()
    samples = results["samples"]["tiny_choice"]
    assert len(samples) == 3
    # the harness's accuracy is the argmax of our scores, and each score is minus our scorer's loss for that choice
    _, _, (model, tokenizer) = harness_setup
    lm = adapter.DiffusionLMEval(model=model, tokenizer=tokenizer, mc_samples=4, seed=0, device="cpu",
                                 greedy_check=False)
    hits = []
    for sample in samples:
        doc = sample["doc"]
        scores = [r[0][0] for r in sample["resps"]]
        from lm_eval.api.instance import Instance

        ours = lm.loglikelihood([Instance("loglikelihood", {}, (doc["question"], " " + choice), i,
                                          metadata=("tiny_choice", sample["doc_id"], 1))
                                 for i, choice in enumerate(doc["choices"])])
        assert scores == pytest.approx([value for value, _ in ours], rel=1e-5)
        hits.append(max(range(len(scores)), key=scores.__getitem__) == doc["label"])
    assert results["results"]["tiny_choice"]["acc,none"] == pytest.approx(sum(hits) / len(hits))
    # every choice got a diffusion score (-loss < 0) and an honest is_greedy (a bool from the greedy check)
    for sample in samples:
        for log_likelihood, is_greedy in [r[0] for r in sample["resps"]]:
            assert log_likelihood < 0 and isinstance(is_greedy, bool)
    # fixed seed: the same scores again
    again = evaluate()["samples"]["tiny_choice"]
    assert [s["resps"] for s in again] == [s["resps"] for s in samples]


def test_adapter_scores_do_not_depend_on_request_order(harness_setup):
    from lm_eval.api.instance import Instance

    from diffusion_lm.evaluation.lm_eval_adapter import DiffusionLMEval

    _, _, (model, tokenizer) = harness_setup
    lm = DiffusionLMEval(model=model, tokenizer=tokenizer, mc_samples=4, device="cpu")

    def instance(context, continuation, idx):
        return Instance("loglikelihood", {}, (context, continuation), idx)

    requests = [instance("the cat sat on the", " mat", 0), instance("one two", " three four", 1), instance("", " the end", 2)]
    forward = lm.loglikelihood(requests)
    backward = lm.loglikelihood(requests[::-1])[::-1]
    for (a, _), (b, _) in zip(forward, backward):
        assert a == pytest.approx(b, abs=1e-5)
    assert lm.loglikelihood([instance("the", "", 0)]) == [(0.0, False)]
    rolling = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("the cat sat on the mat",), 0)])
    assert len(rolling) == 1 and rolling[0] < 0


def test_is_greedy_is_true_exactly_when_greedy_decoding_reproduces_the_continuation(harness_setup):
    from lm_eval.api.instance import Instance

    from diffusion_lm.evaluation.evaluators import continuation_token_ids
    from diffusion_lm.evaluation.lm_eval_adapter import DiffusionLMEval

    _, _, (model, tokenizer) = harness_setup
    lm = DiffusionLMEval(model=model, tokenizer=tokenizer, mc_samples=2, device="cpu")
    contexts = ["the cat sat on the", "one two three", "once upon a time there"]
    requests, expected = [], []
    for index, context in enumerate(contexts):
        # the model's own greedy filling of 2 masked tokens after the context, decoded directly
        prompt = torch.tensor([tokenizer(context)["input_ids"]])
        holes = torch.zeros(1, prompt.shape[1] + 2, dtype=torch.bool)
        holes[0, -2:] = True
        canvas = torch.cat([prompt, torch.full((1, 2), tokenizer.pad_token_id)], dim=1)
        greedy = model.generate(canvas, infill_mask=holes, max_new_tokens=0, steps=2)[0, -2:].tolist()
        other = [greedy[0], next(t for t in range(10, 60) if t != greedy[1])]  # the second token differs
        for tokens, hit in ((greedy, True), (other, False)):
            continuation = " " + " ".join(tokenizer.convert_ids_to_tokens(tokens))
            assert continuation_token_ids(tokenizer, continuation) == tokens
            requests.append(Instance("loglikelihood", {}, (context, continuation), len(requests)))
            expected.append(hit)
    assert [hit for _, hit in lm.loglikelihood(requests)] == expected
    skipping = DiffusionLMEval(model=model, tokenizer=tokenizer, mc_samples=2, device="cpu", greedy_check="false")
    assert [hit for _, hit in skipping.loglikelihood(requests)] == [False] * len(requests)


def test_choices_of_one_document_share_their_noise(harness_setup):
    """Common random numbers: two identical continuations of one document get identical scores (the same masks),
    and a request's score does not depend on the other requests."""
    from lm_eval.api.instance import Instance

    from diffusion_lm.evaluation.lm_eval_adapter import DiffusionLMEval

    _, _, (model, tokenizer) = harness_setup
    lm = DiffusionLMEval(model=model, tokenizer=tokenizer, mc_samples=4, device="cpu", greedy_check=False)

    def instance(continuation, doc_id, idx):
        return Instance("loglikelihood", {}, ("the cat sat on the", continuation), idx, metadata=("t", doc_id, 1))

    same_doc = lm.loglikelihood([instance(" mat red blue one two", 0, 0), instance(" mat red blue one two", 0, 1)])
    assert same_doc[0][0] == same_doc[1][0]
    other_doc = lm.loglikelihood([instance(" mat red blue one two", 1, 0)])
    assert other_doc[0][0] != same_doc[0][0]  # another document draws other noise
    alone = lm.loglikelihood([instance(" sky blue red two one", 0, 0)])
    together = lm.loglikelihood([instance(" mat red blue one two", 0, 0), instance(" sky blue red two one", 0, 1)])
    assert alone[0][0] == pytest.approx(together[1][0], abs=1e-6)


def test_adapter_needs_a_model():
    from diffusion_lm.evaluation.lm_eval_adapter import DiffusionLMEval

    with pytest.raises(ValueError, match="exactly one"):
        DiffusionLMEval()


def test_registered_model_answers_generate_until_requests(harness_setup):
    import lm_eval

    checkpoint, task_manager, _ = harness_setup
    results = lm_eval.simple_evaluate(
        model="diffusion_lm",
        model_args=f"pretrained={checkpoint},steps=4",
        tasks=["tiny_generate"],
        task_manager=task_manager,
        device="cpu",
        log_samples=True,
    )
    samples = results["samples"]["tiny_generate"]
    outputs = [s["resps"][0][0] for s in samples]
    assert len(outputs) == 3 and all(isinstance(o, str) and "." not in o for o in outputs)
    # the reported accuracy is the share of generations equal to their target (as the task's metric defines it)
    hits = [float(s["filtered_resps"][0].strip() == str(s["target"]).strip()) for s in samples]
    assert [s["exact_match"] for s in samples] == hits
    assert results["results"]["tiny_generate"]["exact_match,none"] == pytest.approx(sum(hits) / len(hits))


def test_harness_command_line_entry_registers_the_model(monkeypatch, capsys):
    import sys

    from lm_eval.api.registry import model_registry

    from diffusion_lm.evaluation import lm_eval_cli

    monkeypatch.setattr(sys, "argv", ["lm_eval", "run", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        lm_eval_cli.main()
    assert exit_info.value.code == 0
    assert "--model_args" in capsys.readouterr().out
    assert "diffusion_lm" in model_registry


@pytest.mark.slow
def test_harness_command_line_runs_on_the_cpu_and_writes_under_the_output_path(harness_setup, tmp_path,
                                                                                 monkeypatch):
    import glob
    import sys

    import torch

    from diffusion_lm.evaluation import lm_eval_cli

    from lm_eval import tasks as lm_eval_tasks

    class LocalTasksOnly(lm_eval_tasks.TaskManager):  # the built-in catalogue takes 10+ s to index; none is used
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval_tasks, "TaskManager", LocalTasksOnly)
    checkpoint, _, _ = harness_setup
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU-only machine
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["diffusion-lm-harness"])
    # no --device: lm-eval's own default (cuda:0) would fail here
    lm_eval_cli.main(["run", "--model", "diffusion_lm", "--model_args", f"pretrained={checkpoint},mc_samples=2",
                      "--tasks", "tiny_choice", "--include_path", str(tmp_path / "tasks"),
                      "--output_path", "runs/eval/harness"])
    (written,) = glob.glob(str(tmp_path / "runs" / "eval" / "harness" / "**" / "results_*.json"), recursive=True)
    # the command line gives what the same settings give in-process
    import lm_eval
    from lm_eval.tasks import TaskManager

    in_process = lm_eval.simple_evaluate(
        model="diffusion_lm", model_args=f"pretrained={checkpoint},mc_samples=2", tasks=["tiny_choice"],
        task_manager=TaskManager(include_path=str(tmp_path / "tasks"), include_defaults=False), device="cpu")
    assert json.load(open(written))["results"]["tiny_choice"]["acc,none"] == pytest.approx(
        in_process["results"]["tiny_choice"]["acc,none"])


def test_adapter_refuses_cuda_on_a_machine_without_it(harness_setup, monkeypatch):
    import torch

    from diffusion_lm.evaluation.lm_eval_adapter import DiffusionLMEval

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA: pass --device cpu"):
        DiffusionLMEval(pretrained=harness_setup[0], device="cuda:0")
