"""The embedded toy task of askd-ref: verifiable addition problems, a character tokenizer, tiny
Llama models, and the in-process pipelines of ``askd demo`` and ``askd bench quality``.

Nothing here downloads anything: the tokenizer is built with the ``tokenizers`` library and the
models from a ``LlamaConfig``.
"""

from askd_ref.toy.models import problem_batches, sft_train, tiny_llama
from askd_ref.toy.task import Problem, ProblemPool, ToyTask
from askd_ref.toy.tokenizer import ALPHABET, SPECIAL_TOKENS, build_tokenizer

__all__ = [
    "ALPHABET",
    "SPECIAL_TOKENS",
    "Problem",
    "ProblemPool",
    "ToyTask",
    "build_tokenizer",
    "problem_batches",
    "sft_train",
    "tiny_llama",
]
