"""A local OpenAI-compatible LLM judge for SAE-Bench's autointerp: deterministic answers in the formats its
parsers expect, every request recorded. Explanations are numbered ("pattern k"); when scoring, "parity" answers
"None" for even k and every shown example for odd k; any other `scoring` string is sent as the answer."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Judge:
    """Serves POST /v1/chat/completions on 127.0.0.1 and records every request (headers and body)."""

    def __init__(self, scoring: str = "parity"):
        self.scoring = scoring
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.explained = 0
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                headers = {name.lower(): value for name, value in self.headers.items()}
                payload = json.dumps(judge.answer(headers, body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def answer(self, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append((headers, body))
            system, user = body["messages"][0]["content"], body["messages"][1]["content"]
            if "summarize in a single sentence" in system:
                self.explained += 1
                text = f"This neuron activates on pattern {self.explained}."
            elif self.scoring == "parity":
                shown = int(re.search(r"be shown (\d+) example sequences", system).group(1))  # type: ignore[union-attr]
                pattern = int(re.search(r"fires on pattern (\d+)\.", user).group(1))  # type: ignore[union-attr]
                text = "None" if pattern % 2 == 0 else ", ".join(str(i) for i in range(1, shown + 1))
            else:
                text = self.scoring
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def phases(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        explain = [
            body for _, body in self.requests if "summarize in a single sentence" in body["messages"][0]["content"]
        ]
        score = [
            body
            for _, body in self.requests
            if "You will be given a short explanation" in body["messages"][0]["content"]
        ]
        return explain, score


@contextmanager
def running_judge(scoring: str = "parity") -> Iterator[Judge]:
    """A judge serving on 127.0.0.1 (a free port) for the duration of the block."""
    judge = Judge(scoring)
    thread = threading.Thread(target=judge.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield judge
    finally:
        judge.server.shutdown()
        judge.server.server_close()
        thread.join()
