"""Tiny models built from config (no downloads) and the embedded defaults, loaded once."""

from __future__ import annotations

import os

# Set before anything imports huggingface_hub or transformers, which read them at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

from freezetune.cli.main import main  # noqa: E402
from freezetune.training.callbacks import Callback  # noqa: E402

pytest_plugins = ["serve_fixtures"]  # the server tests' checkpoints (tests/serve)

# Command-line flags that make a training run take seconds.
FAST = ["--epochs", "1", "--batch-size", "8", "--max-length", "16", "--no-progress", "--retention", "none"]


def tiny_bert(num_blocks: int = 4):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=num_blocks, num_attention_heads=2,
        intermediate_size=64, vocab_size=100, max_position_embeddings=64,
    )
    return BertModel(config)


def tiny_classifier(pooling: str = "mean", num_blocks: int = 4, num_labels: int = 3):
    from freezetune.core.model import SequenceClassifier

    backbone = tiny_bert(num_blocks)
    torch.manual_seed(0)
    return SequenceClassifier(backbone, num_labels=num_labels, pooling=pooling)


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=3, n_head=2, vocab_size=50, n_positions=32))


def tiny_llama(tie: bool = True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=32, vocab_size=50, tie_word_embeddings=tie, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config)


@pytest.fixture
def bert_classifier():
    return tiny_classifier()


def toy_batches(n: int = 48, seq: int = 12, vocab: int = 100, num_labels: int = 3, seed: int = 0):
    """A learnable toy task: the label is which third of the vocabulary token 1 comes from."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (n, seq), generator=g)
    lengths = torch.randint(seq // 2, seq + 1, (n,), generator=g)
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    ids = ids * mask
    labels = (ids[:, 1] * num_labels // vocab).clamp(max=num_labels - 1)
    return [
        {"input_ids": ids[i : i + 8], "attention_mask": mask[i : i + 8], "labels": labels[i : i + 8]}
        for i in range(0, n, 8)
    ]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny BERT saved with the embedded MiniLM tokenizer: a real model folder, trained in seconds."""
    import shutil
    from pathlib import Path

    from transformers import BertConfig, BertModel

    from freezetune.io.defaults import default_model_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, vocab_size=30522, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    source = Path(default_model_path())
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).exists():
            shutil.copy(source / name, folder / name)
    return str(folder)


@pytest.fixture
def sentiment_csv(tmp_path):
    """A small, learnable two-class CSV plus an eval file."""
    import csv

    good = ["great", "lovely", "wonderful", "superb", "excellent", "fine", "happy", "nice"]
    bad = ["awful", "terrible", "boring", "dreadful", "bad", "poor", "sad", "ugly"]
    rows = [(f"a {w} film really {good[(i + 3) % 8]}", "pos") for i, w in enumerate(good * 4)]
    rows += [(f"a {w} film really {bad[(i + 3) % 8]}", "neg") for i, w in enumerate(bad * 4)]
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return train


def toy_dataset(n=40, vocab=100, num_labels=3, seed=0, pairs=False):
    """A tokenized toy data set (a `datasets.Dataset`), learnable like toy_batches."""
    import datasets

    g = torch.Generator().manual_seed(seed)
    rows = {"input_ids": [], "attention_mask": [], "labels": []}
    if pairs:
        rows["token_type_ids"] = []
    for _ in range(n):
        length = int(torch.randint(4, 14, (1,), generator=g))
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        rows["input_ids"].append(ids)
        rows["attention_mask"].append([1] * length)
        rows["labels"].append(ids[1] * num_labels // vocab)
        if pairs:
            rows["token_type_ids"].append([0] * (length // 2) + [1] * (length - length // 2))
    return datasets.Dataset.from_dict(rows)


# ---------------------------------------------------------------------- tiny decoders with a tokenizer
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }} {{ m['content'] }}<|im_end|> {% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant {% endif %}"
)
WORDS = ("review the film was great awful fun dull and . sentiment ? positive negative is this a movie "
         "plot story good bad very quite").split()


def tiny_tokenizer(chat: bool = True):
    """A word-level tokenizer over WORDS with <s>, <|im_end|> (EOS) and chat markers: built, never downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<s>", "<|im_end|>", "<|im_start|>", "user", "assistant"]
    vocab = {w: i for i, w in enumerate([*specials, *WORDS])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="<|im_end|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_decoder(arch: str = "llama", vocab_size: int = 40, tie: bool = True):
    """A tiny GPT-2, Llama or Qwen2 causal LM built from config (4 blocks; GPT-2 3)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=3, n_head=2, vocab_size=vocab_size, n_positions=128,
                                          bos_token_id=2, eos_token_id=3))
    kwargs = dict(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1,
                  intermediate_size=32, vocab_size=vocab_size, tie_word_embeddings=tie, max_position_embeddings=128,
                  bos_token_id=2, eos_token_id=3, pad_token_id=1)
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**kwargs))
    return LlamaForCausalLM(LlamaConfig(**kwargs))


def save_tiny_decoder(folder, arch: str = "llama", chat: bool = True, tie: bool = True) -> str:
    tokenizer = tiny_tokenizer(chat)
    tiny_decoder(arch, vocab_size=len(tokenizer), tie=tie).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_decoder_dir(tmp_path_factory):
    """A tiny Llama with a chat-template tokenizer, saved as a real model folder."""
    return save_tiny_decoder(tmp_path_factory.mktemp("tiny-llama"))


def sentiment_chat_rows(n: int = 48) -> list[dict[str, str]]:
    """Prompt/response rows a tiny decoder learns in seconds: the answer follows the adjective."""
    rows = []
    for i in range(n):
        good = i % 2 == 0
        adjective = ["great", "fun", "good"][i % 3] if good else ["awful", "dull", "bad"][i % 3]
        rows.append({"prompt": f"review the film was very {adjective} . sentiment ?",
                     "response": "positive" if good else "negative"})
    return rows


@pytest.fixture
def chat_jsonl(tmp_path):
    import json

    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sentiment_chat_rows()))
    return path



class StopAt(Callback):
    """Interrupts training the way Ctrl-C does, right after optimizer step ``step``."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, tuner, record):
        if record["step"] == self.step:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def finished_comparison(tiny_model_dir, tmp_path_factory):
    """A finished compare of 3 plans x 2 seeds x 2 training sizes, with its report (tests/report)."""
    folder = tmp_path_factory.mktemp("report")
    good = ["great", "lovely", "wonderful", "superb", "excellent", "fine", "happy", "nice"]
    bad = ["awful", "terrible", "boring", "dreadful", "bad", "poor", "sad", "ugly"]
    lines = ["text,label"] + [f"a {w} film really {good[(i + 3) % 8]},pos" for i, w in enumerate(good * 4)]
    lines += [f"a {w} film really {bad[(i + 3) % 8]},neg" for i, w in enumerate(bad * 4)]
    data = folder / "train.csv"
    data.write_text("\n".join(lines) + "\n")
    out = folder / "cmp"
    args = ["compare", "--model", tiny_model_dir, "--data", str(data), "--test-data", str(data),
            "--strategy", "full", "--strategy", "head_only", "--strategy", "top_k:2", "--seeds", "2",
            "--train-sizes", "24,all", "--output", str(out), *FAST,
            "--epochs", "6", "--lr", "3e-3"]  # enough to learn these words: a report of nothing learned says little
    assert main(args) == 0
    return out
