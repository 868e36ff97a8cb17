"""Diffusion SFT through TRL's SFTTrainer (+ PEFT LoRA) on tiny models: CPU, seconds each."""

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
import torch
from datasets import Dataset
from tiny import tiny_diffusion_model

from diffusion_lm.chat_generation import chat_stop_token_ids, generate_completions
from diffusion_lm.sft import DiffusionSFTConfig, DiffusionSFTTrainer, lora_config_for
from diffusion_lm.sft_data import alpaca_to_prompt_completion, load_sft_dataset, split_last_assistant_turn

# variable-length answers: the model must learn where each one stops
PAIRS = [
    ("what is one plus one ?", "two"),
    ("what is two plus two ?", "four"),
    ("hello", "good morning sun"),
    ("story", "once upon a time there lived a king"),
]


def config(tmp_path, **overrides):
    defaults = dict(
        output_dir=str(tmp_path / "out"),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        lr_scheduler_type="constant",
        activation_checkpointing=False,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        logging_steps=1,
        seed=0,
        max_length=32,
    )
    defaults.update(overrides)
    return DiffusionSFTConfig(**defaults)


def prompt_completion_dataset():
    return Dataset.from_list([{"prompt": p, "completion": " " + c} for p, c in PAIRS])


def messages_dataset():
    return Dataset.from_list(
        [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": c}]} for p, c in PAIRS]
    )


def collated(trainer, n=4):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


class RecordingTrainer(DiffusionSFTTrainer):
    """Records the clean batch handed to the objective; a hook records what the model actually saw."""

    def diffusion_inputs(self, inputs, **step_settings):
        input_ids, maskable, attention_mask = super().diffusion_inputs(inputs, **step_settings)
        self.records.append({"clean": input_ids.clone(), "maskable": maskable.clone(),
                             "labels": inputs["labels"].clone(), "attention_mask": attention_mask})
        return input_ids, maskable, attention_mask


# --- config -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [dict(loss_normalization="mean"), dict(noise_eps=1.0), dict(packing=True), dict(padding_free=True),
     dict(completion_only_loss=False), dict(mask_token_id=-1)],
)
def test_config_rejects_bad_values(tmp_path, bad):
    with pytest.raises(ValueError):
        config(tmp_path, **bad)


def test_trl_parses_the_config_with_its_diffusion_fields(tmp_path):
    """TRL's own argument parser takes DiffusionSFTConfig: SFT and diffusion fields under one name each."""
    from trl import TrlParser

    (parsed,) = TrlParser((DiffusionSFTConfig,)).parse_args_and_config(
        ["--output_dir", str(tmp_path), "--max_length", "64", "--noise_eps", "0.01", "--loss_normalization", "elbo",
         "--eos_filler", "longest", "--use_cpu", "true"])
    assert isinstance(parsed, DiffusionSFTConfig)
    assert (parsed.max_length, parsed.noise_eps, parsed.loss_normalization, parsed.eos_filler) == (
        64, 0.01, "elbo", "longest")
    import diffusion_lm

    assert diffusion_lm.DiffusionSFTTrainer is DiffusionSFTTrainer


def test_model_without_mask_token_is_rejected(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    model.config.mask_token_id = None
    tokenizer.mask_token = None
    with pytest.raises(ValueError, match="MASK"):
        DiffusionSFTTrainer(model, args=config(tmp_path), train_dataset=prompt_completion_dataset(),
                            processing_class=tokenizer)


def test_max_length_beyond_the_model_positions_is_rejected(tmp_path):
    model, tokenizer = tiny_diffusion_model("gpt2")
    with pytest.raises(ValueError, match="positions"):
        DiffusionSFTTrainer(model, args=config(tmp_path, max_length=1024), train_dataset=prompt_completion_dataset(),
                            processing_class=tokenizer)


def test_model_given_as_a_path(tmp_path):
    model, tokenizer = tiny_diffusion_model("qwen2")
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    trainer = DiffusionSFTTrainer(str(tmp_path / "base"), args=config(tmp_path),
                                  train_dataset=prompt_completion_dataset())
    assert trainer.base_model().config.model_type == "diffuqwen2"
    assert trainer.mask_token_id == model.config.mask_token_id
    trainer.train()


def test_ar_model_is_rejected(tmp_path):
    from tiny import tiny_ar_model, tiny_tokenizer

    with pytest.raises(ValueError, match="not a diffusion LM"):
        DiffusionSFTTrainer(tiny_ar_model("llama"), args=config(tmp_path), train_dataset=prompt_completion_dataset(),
                            processing_class=tiny_tokenizer(with_mask=True))


# --- what is maskable -----------------------------------------------------------------------------------------------
def test_prompt_is_never_noised(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    # fixed-length filler, so rows of different steps line up position by position
    trainer = RecordingTrainer(model, args=config(tmp_path, max_steps=40, eos_filler="max_length", max_length=20),
                               train_dataset=prompt_completion_dataset(), processing_class=tokenizer)
    trainer.records = []
    seen = []
    hook = trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    trainer.train()
    hook.remove()
    assert len(seen) == len(trainer.records) == 40
    mask_id = model.config.mask_token_id
    ever_masked = {}  # per example (clean row), over all steps
    for record, noisy in zip(trainer.records, seen):
        # corruption indicator: the mask id is a dedicated token, so a changed position is a masked one
        is_masked = noisy != record["clean"]
        assert (noisy[is_masked] == mask_id).all()
        first_completion = (record["labels"] != -100).int().argmax(1, keepdim=True)
        prompt = torch.arange(record["clean"].shape[1]) < first_completion
        assert not is_masked[prompt].any(), "a prompt token was noised"
        assert not is_masked[:, 0].any()
        assert not (is_masked & ~record["maskable"]).any()
        assert record["attention_mask"] is None  # trailing EOS filler is visible
        for clean, maskable, masked in zip(record["clean"], record["maskable"], is_masked):
            key = tuple(clean.tolist())
            union, _ = ever_masked.get(key, (torch.zeros_like(masked), None))
            ever_masked[key] = (union | masked, maskable)
    # over 40 steps every maskable position (completion, EOS, trailing filler) was noised at least once
    assert len(ever_masked) == len(PAIRS)
    for union, maskable in ever_masked.values():
        assert (union == maskable).all()


def test_completion_eos_and_trailing_padding_are_maskable(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path), train_dataset=prompt_completion_dataset(),
                                  processing_class=tokenizer)
    batch = collated(trainer)
    input_ids, maskable, attention_mask = trainer.diffusion_inputs(batch)
    eos = tokenizer.eos_token_id
    for row in range(4):
        prompt_len = len(tokenizer(PAIRS[row][0])["input_ids"])
        answer_len = len(tokenizer(" " + PAIRS[row][1])["input_ids"])
        assert not maskable[row, :prompt_len].any()
        assert maskable[row, prompt_len:].all()
        # answer, its EOS, then EOS filler where the collator padded
        assert (input_ids[row, prompt_len + answer_len:] == eos).all()
        assert tokenizer.decode(input_ids[row, prompt_len:prompt_len + answer_len]) == PAIRS[row][1]
    assert (batch["attention_mask"] == 0).any() and attention_mask is None


@pytest.mark.parametrize("mode", ["random", "max_length", "longest"])
def test_eos_filler_modes(tmp_path, mode):
    model, tokenizer = tiny_diffusion_model("llama")
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, eos_filler=mode, max_length=20),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer)
    batch = collated(trainer)
    width = batch["input_ids"].shape[1]
    trainer.model.train()
    lengths = set()
    for _ in range(30):
        input_ids, maskable, _ = trainer.diffusion_inputs(batch)
        assert input_ids.shape == maskable.shape and width <= input_ids.shape[1] <= 20
        assert (input_ids[:, width:] == tokenizer.eos_token_id).all() and maskable[:, width:].all()
        lengths.add(input_ids.shape[1])
    expected = {"random": set(range(width, 21)), "max_length": {20}, "longest": {width}}[mode]
    assert lengths == expected if mode != "random" else len(lengths) > 5 and lengths <= expected
    trainer.model.eval()  # evaluation never draws a random length
    assert trainer.diffusion_inputs(batch)[0].shape[1] == (20 if mode == "max_length" else width)


def test_eos_filler_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="eos_filler"):
        config(tmp_path, eos_filler="all")
    with pytest.raises(ValueError, match="max_length"):
        config(tmp_path, max_length=None)
    config(tmp_path, max_length=None, eos_filler="longest")


def test_plain_text_masks_everything_but_position_zero(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    data = Dataset.from_list([{"text": "the cat sat on the mat"}, {"text": "a dog ran"}])
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, per_device_train_batch_size=2), train_dataset=data,
                                  processing_class=tokenizer)
    _, maskable, _ = trainer.diffusion_inputs(collated(trainer, 2))
    assert not maskable[:, 0].any() and maskable[:, 1:].all()


@pytest.mark.parametrize("fmt", ["messages", "conversational_prompt_completion", "sharegpt"])
def test_conversational_formats_keep_the_prompt_given(tmp_path, fmt):
    model, tokenizer = tiny_diffusion_model("llama")
    if fmt == "messages":
        data = messages_dataset()
    elif fmt == "conversational_prompt_completion":
        data = messages_dataset().map(split_last_assistant_turn, remove_columns=["messages"])
    else:
        data = Dataset.from_list([{"conversations": [{"from": "human", "value": p}, {"from": "gpt", "value": c}]}
                                  for p, c in PAIRS])
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path), train_dataset=data, processing_class=tokenizer)
    input_ids, maskable, _ = trainer.diffusion_inputs(collated(trainer))
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for row, (question, answer) in enumerate(PAIRS):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
        prompt_len = len(prompt["input_ids"])
        assert not maskable[row, :prompt_len].any()
        assert maskable[row, prompt_len:].all()
        n = len(tokenizer(answer)["input_ids"])
        assert tokenizer.decode(input_ids[row, prompt_len:prompt_len + n]) == answer
        assert input_ids[row, prompt_len + n] == end_of_turn  # the end-of-turn token is a target


def test_assistant_only_loss_uses_trl_assistant_masks(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    tokenizer.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }} : "
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
        "{% else %}{{ m['content'] }}<|im_end|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant : {% endif %}"
    )
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, assistant_only_loss=True),
                                  train_dataset=messages_dataset(), processing_class=tokenizer)
    assert "input_ids" in trainer.train_dataset.column_names  # TRL tokenized the conversations
    batch = collated(trainer)
    _, maskable, _ = trainer.diffusion_inputs(batch)
    for row, (question, _) in enumerate(PAIRS):
        prompt_len = len(tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                       add_generation_prompt=True)["input_ids"])
        assert not maskable[row, :prompt_len].any() and maskable[row, prompt_len:].all()


def test_left_padding_is_rejected(tmp_path):
    model, tokenizer = tiny_diffusion_model("llama")
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path), train_dataset=prompt_completion_dataset(),
                                  processing_class=tokenizer)
    batch = collated(trainer)
    batch["attention_mask"] = batch["attention_mask"].flip(1)
    with pytest.raises(ValueError, match="left padding"):
        trainer.diffusion_inputs(batch)


def test_eval_loss_is_reproducible_and_logged(tmp_path):
    model, tokenizer = tiny_diffusion_model("gpt2")
    data = prompt_completion_dataset()
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, loss_normalization="elbo"), train_dataset=data,
                                  eval_dataset=data, processing_class=tokenizer)
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first["eval_loss"] == second["eval_loss"]
    assert {"eval_loss_unweighted", "eval_elbo", "eval_masked_fraction"} <= set(first)
    trainer.train()
    logged = trainer.state.log_history[0]
    assert {"loss", "loss_weighted", "loss_unweighted", "masked_fraction"} <= set(logged)


# --- generation ---------------------------------------------------------------------------------------------------
def test_chat_stop_token_is_detected():
    _, tokenizer = tiny_diffusion_model("llama")
    assert chat_stop_token_ids(tokenizer) == [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    tokenizer.chat_template = None
    assert chat_stop_token_ids(tokenizer) == []


def train_pairs(tmp_path, family="llama", steps=400, data=None, peft_config=None, **overrides):
    model, tokenizer = tiny_diffusion_model(family)
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, max_steps=steps, logging_steps=100, **overrides),
                                  train_dataset=data if data is not None else prompt_completion_dataset(),
                                  processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    return trainer, tokenizer


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_tiny_model_learns_pairs_and_answers_through_generate(tmp_path, family):
    trainer, tokenizer = train_pairs(tmp_path, family)
    model = trainer.model.eval()
    replies = generate_completions(model, tokenizer, [p for p, _ in PAIRS], max_new_tokens=10, steps=10)
    assert replies == [a for _, a in PAIRS]
    # generate itself stops at EOS: everything after the first EOS is padding
    ids = tokenizer("story", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, steps=12, temperature=0.0)[0, ids.shape[1]:]
    n = len(tokenizer("once upon a time there lived a king")["input_ids"])
    assert out[n] == tokenizer.eos_token_id
    assert (out[n + 1:] == model.generation_config.pad_token_id).all()


def test_chat_generation_stops_at_end_of_turn(tmp_path):
    trainer, tokenizer = train_pairs(tmp_path, data=messages_dataset())
    model = trainer.model.eval()
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = model.generation_config.eos_token_id
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])
    for question, answer in PAIRS:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               return_tensors="pt")
        out = model.generate(inputs["input_ids"], max_new_tokens=12, steps=12, temperature=0.0)
        new = out[0, inputs["input_ids"].shape[1]:]
        n = len(tokenizer(answer)["input_ids"])
        assert tokenizer.decode(new[:n]) == answer
        assert new[n] == end_of_turn and (new[n + 1:] == model.generation_config.pad_token_id).all()


# --- PEFT ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_lora_config_trains_embeddings_in_full(family):
    model, _ = tiny_diffusion_model(family)
    lora = lora_config_for(model, r=4)
    assert lora.lora_alpha == 8 and lora.target_modules == "all-linear"
    assert set(lora.modules_to_save) == ({"embed_tokens", "lm_head"} if family == "llama" else {"wte", "lm_head"})


def test_lora_adapter_saves_reloads_merges_and_generates(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = str(tmp_path / "base")
    model, tokenizer = tiny_diffusion_model("llama")
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    base = AutoModelForCausalLM.from_pretrained(base_dir, trust_remote_code=True)
    lora = lora_config_for(base, r=8)
    trainer = DiffusionSFTTrainer(base, args=config(tmp_path, max_steps=400, learning_rate=5e-3, logging_steps=100),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer,
                                  peft_config=lora)
    assert isinstance(trainer.model, PeftModel)
    trainer.train()
    adapter_dir = str(tmp_path / "adapter")
    trainer.save_model(adapter_dir)
    assert os.path.isfile(os.path.join(adapter_dir, "adapter_config.json"))
    assert not os.path.isfile(os.path.join(adapter_dir, "model.safetensors"))  # adapter only

    prompts = [p for p, _ in PAIRS]
    expected = [a for _, a in PAIRS]
    peft_model = trainer.model.eval()
    assert generate_completions(peft_model, tokenizer, prompts, max_new_tokens=10, steps=10) == expected

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir, trust_remote_code=True), adapter_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir, trust_remote_code=True)
    ids = tokenizer("story", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, peft_model(input_ids=ids).logits)
    assert generate_completions(reloaded, tokenizer, prompts, max_new_tokens=10, steps=10) == expected

    merged = reloaded.merge_and_unload()
    merged_dir = str(tmp_path / "merged")
    merged.save_pretrained(merged_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, trust_remote_code=True).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, peft_model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-4)
    assert generate_completions(merged, tokenizer, prompts, max_new_tokens=10, steps=10) == expected


# --- dataset loading ------------------------------------------------------------------------------------------------
def test_alpaca_rows_become_prompt_completion():
    row = {"instruction": "Add", "input": "1 and 2", "output": "3", "history": [["hi", "hello"]]}
    chat = alpaca_to_prompt_completion(row, chat=True)
    assert [m["role"] for m in chat["prompt"]] == ["user", "assistant", "user"]
    assert chat["prompt"][-1]["content"] == "Add\n\n1 and 2" and chat["completion"][0]["content"] == "3"
    plain = alpaca_to_prompt_completion(row, chat=False)
    assert plain["prompt"].endswith("Add\n\n1 and 2\n") and plain["completion"] == "3"
    with pytest.raises(ValueError, match="instruction"):
        alpaca_to_prompt_completion({"output": "x"}, chat=True)


def test_load_sft_dataset_local_files(tmp_path):
    import json

    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    assert load_sft_dataset(str(alpaca), chat=False)[0] == {"prompt": "q\n", "completion": "a"}
    sharegpt = tmp_path / "chat.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}))
    assert load_sft_dataset(str(sharegpt))[0]["messages"][1] == {"role": "assistant", "content": "a"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q"}))
    with pytest.raises(ValueError, match="unrecognised"):
        load_sft_dataset(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_sft_dataset(str(tmp_path / "missing.json"))


def test_shared_sft_files_load(shared_data):
    lima = load_sft_dataset(os.path.join(shared_data, "sft", "lima.json"))
    assert len(lima) == 1029 and lima[0]["completion"][0]["role"] == "assistant"
    alpaca = load_sft_dataset(os.path.join(shared_data, "sft", "alpaca_en_demo.json"), chat=False)
    assert set(alpaca.column_names) == {"prompt", "completion"}


# --- push ---------------------------------------------------------------------------------------------------------
class FakeHubApi:
    """Stands in for huggingface_hub.HfApi: records what an upload would send (no network)."""

    def __init__(self):
        self.uploads = []

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        files = sorted(os.listdir(folder_path))
        readme = open(os.path.join(folder_path, "README.md")).read() if "README.md" in files else ""
        self.uploads.append({"repo_id": repo_id, "files": files, "readme": readme})


@pytest.mark.parametrize("lora", [False, True])
def test_push_to_hub_uploads_weights_with_a_card(tmp_path, monkeypatch, lora):
    api = FakeHubApi()
    monkeypatch.setattr("transformers.trainer.hf_api", lambda: api)
    model, tokenizer = tiny_diffusion_model("llama")
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, push_to_hub=True, hub_model_id="me/tiny-sft"),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer,
                                  peft_config=lora_config_for(model, r=4) if lora else None)
    assert {"diffusion-lm", "masked-diffusion"} <= set(trainer.model.model_tags)  # for TRL's and PEFT's cards too
    trainer.train()
    trainer.push_to_hub(dataset_name="me/pairs")
    upload = api.uploads[-1]
    assert upload["repo_id"] == "me/tiny-sft"
    assert ("adapter_model.safetensors" if lora else "model.safetensors") in upload["files"]
    assert "diffusion_lm_training.json" in upload["files"]
    assert "diffusion-lm" in upload["readme"]  # the trainer's tags reach the card
    if not lora:  # a full checkpoint gets diffusion_lm's card (model_card.write_card), with the SFT record
        assert "supervised fine-tuning" in upload["readme"] and "me/pairs" in upload["readme"]


def test_sft_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    """A save that dies half-way leaves no checkpoint-N for --resume to pick up; a finished one leaves no staging."""
    from diffusion_lm.sft import DiffusionSFTTrainer

    model, tokenizer = tiny_diffusion_model("llama")
    out = tmp_path / "out"
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, max_steps=2, save_strategy="steps", save_steps=1),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer)

    def crash(*args, **kwargs):
        raise RuntimeError("killed while saving the optimizer")

    monkeypatch.setattr(DiffusionSFTTrainer, "_save_optimizer_and_scheduler", crash)
    with pytest.raises(RuntimeError, match="killed while saving"):
        trainer.train()
    assert not list(out.glob("checkpoint-*"))  # the weights written before the crash sit in staging only
    monkeypatch.undo()
    trainer = DiffusionSFTTrainer(model, args=config(tmp_path, max_steps=2, save_strategy="steps", save_steps=1),
                                  train_dataset=prompt_completion_dataset(), processing_class=tokenizer)
    trainer.train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (out / "checkpoint-2" / "model.safetensors").is_file() and not (out / ".staging").exists()
