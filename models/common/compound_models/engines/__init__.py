"""TensorRT-LLM engines: specs per GPU type, build plans, builds and the manifest check.

Bundled into the LLM Truss so `load()` can refuse an engine built for another GPU
(`manifest.verify_engine_for_this_gpu`). Nothing here imports tensorrt_llm or truss at
module import time: the served Truss has neither guaranteed, and CPU boxes never have
tensorrt_llm.
"""
