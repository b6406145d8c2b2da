"""The embedded decoder, SmolLM2-135M-Instruct, end to end (marker: integration; `make test` runs them).

A few optimizer steps on prompt/response rows through the CLI with the default model (no
--model), then what users do with the result: `freezetune predict`, and the exports loaded the
standard way, generating the same tokens as the run's own model.
"""

import csv
import json

import pytest
import torch

from freezetune.cli.main import main
from freezetune.io.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration

SMOLLM2_BLOCK = 3_540_096


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smollm2")
    data = folder / "chat.jsonl"
    rows = [{"prompt": f"Movie review: {w} film. Is this review positive or negative?",
             "response": "positive" if i % 2 == 0 else "negative"}
            for i, w in enumerate(["a great", "an awful", "a lovely", "a dull"] * 4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = folder / "run"
    code = main(["train", "--task", "causal-lm", "--data", str(data), "--prompt-column", "prompt",
                 "--response-column", "response", "--strategy", "lora:r=4:blocks=28-29", "--max-steps", "2",
                 "--batch-size", "4", "--max-length", "48", "--no-progress", "--retention", "ppl",
                 "--retention-limit", "256", "--output", str(out)])
    assert code == 0
    return folder, out, rows


def test_default_decoder_run_reports_perplexity_retention_and_pools_nothing(trained):
    _, out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    config = (out / "config.yaml").read_text()
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in config and "task: causal-lm" in config
    assert metrics["summary"]["task"] == "causal-lm"
    retention = metrics["costs"]["retention"]
    assert retention["reference"] == "ppl" and retention["limit"] == 256 and retention["source"]
    assert 1 < retention["before"] < 200  # a real pretrained model reads English
    # LoRA r=4 on q_proj (576 -> 576) and v_proj (576 -> 192) of blocks 28-29, plus the final norm (the head
    # unit: lm_head is tied to the frozen embedding)
    assert metrics["costs"]["trainable_params"] == 2 * ((576 * 4 + 4 * 576) + (576 * 4 + 4 * 192)) + 576
    assert metrics["units"]["block.0"] == SMOLLM2_BLOCK


def test_predict_and_exports_generate_the_run_models_tokens(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from freezetune.io import defaults

    folder, out, rows = trained
    prompts = folder / "prompts.csv"
    with prompts.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt"])
        writer.writerows([[r["prompt"]] for r in rows[:4]])
    generations = tmp_path / "gen.csv"
    assert main(["predict", "--checkpoint", str(out), "--data", str(prompts), "--max-new-tokens", "4",
                 "--output", str(generations)]) == 0
    assert [r["generation"] != "" for r in csv.DictReader(generations.open())] == [True] * 4

    model, tokenizer, _ = load_checkpoint(out)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": rows[0]["prompt"]}],
                                        add_generation_prompt=True, return_tensors="pt", return_dict=True)
    expected = model.backbone.generate(**ids, max_new_tokens=6, do_sample=False)
    assert main(["export", "--checkpoint", str(out), "--format", "hf", "--to", str(tmp_path / "hf")]) == 0
    assert main(["export", "--checkpoint", str(out), "--format", "peft", "--to", str(tmp_path / "peft")]) == 0
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32)
    base_folder, gguf_file = defaults.smollm2_gguf()  # a GGUF base: the two-step load passes gguf_file
    base = AutoModelForCausalLM.from_pretrained(base_folder, gguf_file=gguf_file, dtype=torch.float32)
    adapter = PeftModel.from_pretrained(base, str(tmp_path / "peft"))
    for loaded in (merged, adapter):
        assert torch.equal(loaded.generate(**ids, max_new_tokens=6, do_sample=False), expected)
    assert "smollm2" in (tmp_path / "peft" / "README.md").read_text().lower()  # the card names its base
