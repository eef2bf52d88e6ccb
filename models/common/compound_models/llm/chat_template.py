"""The chat template a GGUF defines, as llama-cpp-python builds it (Llama.__init__).

Shared by the LLM backend (which installs it as the chat handler) and the json node's
constrained decoder (which needs the rendered prompt itself), so both apply the model's
own `tokenizer.chat_template` the same way.
"""
from __future__ import annotations


def gguf_chat_formatter(llm):
    """A Jinja2ChatFormatter for `llm`'s `tokenizer.chat_template`; RuntimeError if it has none."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        raise RuntimeError(f"{llm.model_path} has no tokenizer.chat_template metadata; "
                           "a chat model GGUF is required")
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    return Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )


def chat_prompt_tokens(llm, formatter, messages: list) -> list[int]:
    """Token ids of the rendered chat prompt, tokenized exactly as the chat handler does."""
    rendered = formatter(messages=messages)
    return llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special,
                        special=True)
