"""A character-level tokenizer for the toy task, built with the ``tokenizers`` library.

Every character of :data:`ALPHABET` is one token; ``<pad>``, ``<s>`` (BOS), ``</s>`` (EOS) and
``<unk>`` are special. The result is a :class:`transformers.PreTrainedTokenizerFast`, so it is
saved next to every toy model with ``save_pretrained`` and loaded back with
``AutoTokenizer.from_pretrained``. Encoding is a bijection on strings over the alphabet:
``decode(encode(s)) == s``.
"""

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["ALPHABET", "SPECIAL_TOKENS", "build_tokenizer"]

#: Special tokens, in id order (ids 0–3).
SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<s>", "</s>", "<unk>")

#: Ordinary characters, one token each (ids 4, 5, …).
ALPHABET: str = "0123456789+-*=#>,;:| abcdefghijklmnopqrstuvwxyz\n"


def build_tokenizer(alphabet: str = ALPHABET) -> PreTrainedTokenizerFast:
    """The character-level tokenizer: one token per character, BOS prepended to every encoding.

    Args:
        alphabet: the ordinary characters (no duplicates).

    Returns:
        A :class:`~transformers.PreTrainedTokenizerFast` with ``pad_token="<pad>"``,
        ``bos_token="<s>"``, ``eos_token="</s>"`` and ``padding_side="left"`` (for generation).

    Example:
        >>> tok = build_tokenizer()
        >>> ids = tok("12+7=")["input_ids"]
        >>> ids[0] == tok.bos_token_id, len(ids)
        (True, 6)
        >>> tok.decode(ids, skip_special_tokens=True)
        '12+7='
    """
    if not isinstance(alphabet, str) or not alphabet:
        raise ValueError("alphabet must be a non-empty string of characters")
    if len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet has duplicate characters: {alphabet!r}")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
