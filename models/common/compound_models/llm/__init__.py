"""OpenAI-compatible chat completions behind one backend interface.

`service.ChatService` validates requests (`schema`), asks a `backend.ChatBackend`
(llama.cpp on CPU, TensorRT-LLM on GPU) for tokens and shapes OpenAI responses / SSE.
Backends are imported lazily: the CPU box never has tensorrt_llm, a GPU image may lack
llama.cpp.
"""
