"""Tiny random-weight checkpoints (hidden 32, 2 layers, 4 heads) of each supported family.

Saved as normal Hugging Face folders and loaded back through the user path: tests, benchmarks and quick
smoke runs use them without any download.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CORPUS = [
    "the cat sat on the mat",
    "a dog ran in the park",
    "what is two plus three",
    "the answer is five",
    "which of these is a fruit",
    "apple banana cherry grape",
    "this movie was a pure delight",
    "the plot is dull and lifeless",
    "Tom has 5 apples and buys 3 more",
    "how many apples does he have now",
    "question answer choice label rationale teacher student",
    "0 1 2 3 4 5 6 7 8 9 + - * / = ?",
    "the quick brown fox jumps over the lazy dog",
    "one two three four five six seven eight nine ten",
]
SPECIAL = ["<pad>", "</s>", "<s>", "<unk>"]


def _bpe_tokenizer(vocab_size: int = 320) -> Any:
    """Byte-level BPE trained on a few sentences: real merges, every string encodable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", bos_token="<s>", unk_token="<unk>"
    )


def _wordpiece_tokenizer(folder: Path) -> Any:
    from transformers import BertTokenizerFast

    words = sorted({w for line in CORPUS for w in line.lower().split()})
    chars = sorted({c for line in CORPUS for c in line.lower() if not c.isspace()})
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + chars
        + [f"##{c}" for c in chars]
        + [w for w in words if w not in chars]
    )
    return BertTokenizerFast(vocab={tok: i for i, tok in enumerate(vocab)})


def _ids(tok: Any) -> dict[str, Any]:
    return {"pad_token_id": tok.pad_token_id, "eos_token_id": tok.eos_token_id, "bos_token_id": tok.bos_token_id}


def _cfg_bert(t, v):
    from transformers import BertConfig, BertForSequenceClassification

    return BertForSequenceClassification, BertConfig(
        vocab_size=v,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
    )


def _cfg_distilbert(t, v):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    return DistilBertForSequenceClassification, DistilBertConfig(
        vocab_size=v, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=128, num_labels=2
    )


def _cfg_roberta(t, v):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    return RobertaForSequenceClassification, RobertaConfig(
        vocab_size=v,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,
        type_vocab_size=1,
        num_labels=2,
        **_ids(t),
    )


def _cfg_gpt2(t, v):
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel, GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=128, **_ids(t))


def _cfg_llama(t, v):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(
        vocab_size=v,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **_ids(t),
    )


def _cfg_qwen2(t, v):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(
        vocab_size=v,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        **_ids(t),
    )


def _cfg_gpt_neox(t, v):
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    return GPTNeoXForCausalLM, GPTNeoXConfig(
        vocab_size=v,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        **_ids(t),
    )


def _cfg_t5(t, v):
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration, T5Config(
        vocab_size=v,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=t.pad_token_id,
        pad_token_id=t.pad_token_id,
        eos_token_id=t.eos_token_id,
    )


def _cfg_bart(t, v):
    from transformers import BartConfig, BartForConditionalGeneration

    return BartForConditionalGeneration, BartConfig(
        vocab_size=v,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=128,
        decoder_start_token_id=t.eos_token_id,
        **_ids(t),
    )


# family -> (task, tokenizer kind, config builder)
TINY_FAMILIES: dict[str, tuple[str, str, Callable[[Any, int], tuple[Any, Any]]]] = {
    "bert": ("classification", "wordpiece", _cfg_bert),
    "distilbert": ("classification", "wordpiece", _cfg_distilbert),
    "roberta": ("classification", "bpe", _cfg_roberta),
    "gpt2": ("causal_lm", "bpe", _cfg_gpt2),
    "llama": ("causal_lm", "bpe", _cfg_llama),
    "qwen2": ("causal_lm", "bpe", _cfg_qwen2),
    "gpt_neox": ("causal_lm", "bpe", _cfg_gpt_neox),
    "t5": ("seq2seq", "bpe", _cfg_t5),
    "bart": ("seq2seq", "bpe", _cfg_bart),
}


def build_tiny(
    family: str,
    folder: str | Path,
    *,
    vocab_size: int | None = None,
    seed: int = 0,
    num_labels: int | None = None,
    bpe_tokens: int = 320,
) -> Path:
    """Write a random tiny checkpoint of `family` (with a tokenizer) into `folder`; `vocab_size` may pad.
    `bpe_tokens` other than 320 trains a different BPE tokenizer (fewer merges): a cross-tokenizer pair."""
    import torch

    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown tiny family {family!r}; one of {', '.join(TINY_FAMILIES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _, tok_kind, make = TINY_FAMILIES[family]
    tok = _wordpiece_tokenizer(folder) if tok_kind == "wordpiece" else _bpe_tokenizer(bpe_tokens)
    cls, cfg = make(tok, max(vocab_size or 0, len(tok)))
    if num_labels:
        cfg.num_labels = num_labels
    torch.manual_seed(seed)
    model = cls(cfg)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
