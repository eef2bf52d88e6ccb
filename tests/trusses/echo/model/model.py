import collections
import os
import time

from compound_models.errors import InputError, client_errors


class Model:
    """Echo Truss for runtime tests.

    Body keys: `sleep_s` (seconds to block), `fail_status` (always answer that status),
    `fail_first` + `key` (answer 503 for the first N calls carrying that key).
    """

    def __init__(self, **kwargs):
        self._config = kwargs["config"]
        self._calls_by_key = collections.Counter()

    def load(self):
        if self._config["model_metadata"].get("fail_load") or os.environ.get("ECHO_FAIL_LOAD"):
            raise RuntimeError("echo: load failed on purpose (fail_load)")

    def predict(self, model_input):
        with client_errors():
            if not isinstance(model_input, dict):
                raise InputError("body must be a JSON object")
            key = model_input.get("key", "")
            self._calls_by_key[key] += 1
            if "fail_status" in model_input:
                raise InputError("failing on purpose", status_code=int(model_input["fail_status"]))
            if self._calls_by_key[key] <= int(model_input.get("fail_first", 0)):
                raise InputError("transient failure on purpose", status_code=503)
        time.sleep(float(model_input.get("sleep_s", 0)))
        return {"echo": model_input, "calls": self._calls_by_key[key]}
