"""json Truss: schema-valid JSON from a local model (logic in compound_models.jsongen)."""
import starlette.requests
from starlette.concurrency import run_in_threadpool

from compound_models.errors import client_errors
from compound_models.json_body import read_json_body
from compound_models.jsongen.api import chat_response, parse_chat, parse_predict
from compound_models.jsongen.engine import JsonEngine
from compound_models.jsongen.settings import Settings


class Model:
    def __init__(self, **kwargs):
        config = kwargs.get("config") or {}
        self._name = config.get("model_name", "compound-json")
        self._settings = Settings.from_metadata(config.get("model_metadata"))
        self._engine = JsonEngine(self._settings)

    def load(self):
        self._engine.load()

    # Both take only the request: we parse the body ourselves so any malformed body
    # (deep nesting, invalid UTF-8, lone surrogates) is a 400, where Truss's parser 500s.
    # Generation is CPU-bound and runs off the server's event loop.
    async def predict(self, request: starlette.requests.Request):
        with client_errors():
            body = await read_json_body(request)
            parsed = parse_predict(body, self._settings, self._engine.named_schema)
            result = await run_in_threadpool(self._engine.generate, parsed)
            return result.to_predict_response()

    async def chat_completions(self, request: starlette.requests.Request):
        with client_errors():
            parsed = parse_chat(await read_json_body(request), self._settings)
            result = await run_in_threadpool(self._engine.generate, parsed)
            return chat_response(result, self._name)
