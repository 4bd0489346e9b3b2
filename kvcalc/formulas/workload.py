"""Whole requests from single steps: the time of a static batch (every sequence prefilled, then decoded together).

A static batch of B sequences, P prompt tokens and O output tokens each (TensorRT-LLM's gptSessionBenchmark):
    time = prefill(B x P) + (O - 1) * decode step at the mean cached context
    mean cached context = P + O // 2   (the first token comes from the prefill; attention grows linearly, so the
                                        mean step costs what the step at the mean context costs)
    output tokens/s per GPU = B * O / time / GPUs
"""

from __future__ import annotations


def mean_decode_context(prompt_len: int, output_len: int) -> int:
    """Tokens cached, on average, while the output is decoded [tokens]."""
    return prompt_len + output_len // 2


def static_batch_seconds(prefill_s, decode_step_s, output_len: int):
    """One static batch from first prompt token to last output token [s]."""
    return prefill_s + (output_len - 1) * decode_step_s


def output_tokens_per_s_per_gpu(batch: int, output_len: int, seconds, gpus: int):
    """Output tokens per second per GPU of a static batch [tokens/s]."""
    return batch * output_len / seconds / gpus
