"""Request bodies, in the shapes clients already send: vLLM/SGLang's classify, OpenAI's completions and chat.

Unknown fields are refused (a misspelt ``max_token`` must not be ignored silently); fields that
other servers accept and that mean nothing here beyond their default (``user``, ``n=1``, greedy
``temperature=0``) are accepted and checked. ``truncate`` is ours: without it an input longer
than a task takes is refused, never cut silently.
"""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Text = str
PairItem = list[str]
ClassifyInput = Union[Text, list[Union[Text, PairItem]]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassifyRequest(Strict):
    model: Union[str, list[str]] = Field(description="a task name, or a list of task names that share one base")
    input: ClassifyInput = Field(description="a text, a list of texts, or [text, pair] items for pair tasks")
    truncate: bool = Field(False, description="cut inputs longer than a task takes (each result says so) "
                                              "instead of refusing them")
    user: str | None = None
    priority: int | None = None  # accepted for vLLM clients; requests are served in arrival order


class StreamOptions(Strict):
    include_usage: bool = False


class GenerationFields(Strict):
    model: str = Field(description="a causal-LM task name")
    max_tokens: int | None = Field(None, ge=1, description="tokens to generate at most (default: the server's "
                                                           "--default-max-tokens)")
    stop: Union[str, list[str], None] = Field(None, description="up to 4 strings that end the text (not included)")
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=0, description="decoding is greedy: 0 or absent")
    top_p: float | None = Field(None, ge=1, le=1, description="decoding is greedy: 1 or absent")
    n: int = Field(1, ge=1, le=1, description="one choice per prompt")
    seed: int | None = None  # greedy decoding draws nothing
    user: str | None = None
    truncate: bool = Field(False, description="keep the last tokens of a prompt longer than the task takes "
                                              "instead of refusing it")


class CompletionRequest(GenerationFields):
    prompt: Union[str, list[str]]


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str
    name: str | None = None


class ChatRequest(GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens")
