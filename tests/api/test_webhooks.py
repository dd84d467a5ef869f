"""Webhooks against real HTTP receivers: signed payloads, retries, slow and redirecting receivers, restarts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import b64, free_port, image_bytes, wait_for
from openkontext.client import WebhookVerificationError, verify_webhook

ROUTE = "/v1/flux-bagel-alpha"
FAST_RETRIES = dict(url_allowlist="127.0.0.1", webhook_backoff_s=0.2, webhook_timeout_s=2)


class Receiver:
    """A real HTTP server that records webhook calls; ``behaviour(n)`` gives (status, delay_s, headers) for call n."""

    def __init__(self, behaviour=lambda n: (200, 0, {}), port: int | None = None):
        self.calls: list[dict] = []
        self.behaviour = behaviour
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.calls.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                status, delay, headers = receiver.behaviour(len(receiver.calls))
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_calls(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.calls) < count:
            assert time.monotonic() < deadline, f"only {len(self.calls)} of {count} webhook calls arrived"
            time.sleep(0.05)
        return self.calls

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers():
    made = []

    def make(*args, **kwargs):
        made.append(Receiver(*args, **kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def submit(client, **fields) -> dict:
    body = {"prompt": "add a red hat", "input_image": b64(image_bytes()), "steps": 2, **fields}
    response = client.post(ROUTE, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def webhook_state(client, task_id, wanted, timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get("/v1/get_result", params={"id": task_id}).json()
        if state.get("webhook_status") == wanted:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def test_ready_webhook_is_signed_both_ways(start_server, receivers):
    receiver = receivers()
    server = start_server(**FAST_RETRIES)
    secret = "my-webhook-secret"
    with server.client() as client:
        answer = submit(client, webhook_url=receiver.url, webhook_secret=secret)
        assert answer["status"] == "Pending" and answer["webhook_url"] == receiver.url and answer["id"]
        (call,) = receiver.wait_calls(1)
        state = webhook_state(client, answer["id"], "delivered")
    assert state["webhook_attempts"] == 1
    headers, body = {k.lower(): v for k, v in call["headers"].items()}, call["body"]
    payload = json.loads(body)
    assert payload["id"] == answer["id"] and payload["status"] == "Ready" and payload["progress"] == 1.0
    assert abs(payload["timestamp"] - time.time()) < 60
    assert httpx.get(payload["result"]["sample"]).status_code == 200  # a working signed URL
    # Standard Webhooks, computed here independently of the server's code.
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert headers["x-bfl-signature"] == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # The client's helper accepts it, and refuses tampering, a wrong secret and replays.
    assert verify_webhook(body, call["headers"], secret)["id"] == answer["id"]
    bfl_only = {"X-BFL-Signature": headers["x-bfl-signature"]}
    assert verify_webhook(body, bfl_only, secret)["status"] == "Ready"
    for args, kwargs in [
        ((body.replace(b"Ready", b"Error"), call["headers"], secret), {}),
        ((body, call["headers"], "wrong secret"), {}),
        ((body, call["headers"], secret), {"now": time.time() + 3600}),
        ((body, bfl_only, secret), {"now": time.time() + 3600}),
        ((body, {}, secret), {}),
    ]:
        with pytest.raises(WebhookVerificationError):
            verify_webhook(*args, **kwargs)


def test_whsec_secrets_use_the_decoded_key(start_server, receivers):
    receiver = receivers()
    server = start_server(**FAST_RETRIES)
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    with server.client() as client:
        submit(client, webhook_url=receiver.url, webhook_secret=secret)
    (call,) = receiver.wait_calls(1)
    headers = {k.lower(): v for k, v in call["headers"].items()}
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + call["body"]
    assert headers["webhook-signature"] == "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert verify_webhook(call["body"], call["headers"], secret)


def test_unsigned_webhook_without_secret(start_server, receivers):
    receiver = receivers()
    server = start_server(**FAST_RETRIES)
    with server.client() as client:
        submit(client, webhook_url=receiver.url)
    headers = {k.lower() for k in receiver.wait_calls(1)[0]["headers"]}
    assert "webhook-id" in headers and "webhook-signature" not in headers and "x-bfl-signature" not in headers


def test_failing_receiver_is_retried_with_backoff_until_it_recovers(start_server, receivers):
    # 503, connection-level 429, then 500, then it recovers.
    statuses = {1: 503, 2: 429, 3: 500}
    receiver = receivers(lambda n: (statuses.get(n, 200), 0, {}))
    server = start_server(**{**FAST_RETRIES, "webhook_backoff_s": 1.0})
    with server.client() as client:
        task_id = submit(client, webhook_url=receiver.url)["id"]
        calls = receiver.wait_calls(4)
        state = webhook_state(client, task_id, "delivered")
    assert state["webhook_attempts"] == 4
    gaps = [b["at"] - a["at"] for a, b in zip(calls, calls[1:])]
    # Delays of 1, 2 and 4 s, each jittered to 50–150 %: at least 0.5, 1 and 2 s (the sender's 0.5 s poll only
    # adds to them). Without backoff the retries would come every poll, about 0.5 s apart.
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0 and gaps[2] >= 2.0, gaps
    assert len({call["headers"]["webhook-id"] for call in calls}) == 1  # one event, retried


def test_client_errors_are_not_retried(start_server, receivers):
    receiver = receivers(lambda n: (404, 0, {}))
    server = start_server(**FAST_RETRIES)
    with server.client() as client:
        task_id = submit(client, webhook_url=receiver.url)["id"]
        state = webhook_state(client, task_id, "failed")
    assert state["webhook_attempts"] == 1 and len(receiver.calls) == 1


def test_redirects_are_not_followed(start_server, receivers):
    target = receivers()
    redirecting = receivers(lambda n: (307, 0, {"Location": target.url}))
    server = start_server(**FAST_RETRIES)
    with server.client() as client:
        task_id = submit(client, webhook_url=redirecting.url)["id"]
        webhook_state(client, task_id, "failed")
    assert len(redirecting.calls) == 1 and target.calls == []


def test_slow_receiver_blocks_neither_workers_nor_other_deliveries(start_server, receivers):
    # The slow receiver holds each call for 25 s and the server waits up to 20 s for it: a delivery queued behind it
    # would arrive ~20 s late, one made beside it within the few seconds an edit takes, however loaded the machine.
    slow = receivers(lambda n: (200, 25, {}))
    fast = receivers()
    server = start_server(**{**FAST_RETRIES, "webhook_timeout_s": 20})
    with server.client() as client:
        slow_task = submit(client, webhook_url=slow.url)["id"]
        slow.wait_calls(1)
        started = time.monotonic()
        fast_task = submit(client, webhook_url=fast.url)["id"]
        wait_for(client, fast_task)
        fast.wait_calls(1, timeout=10)
        assert time.monotonic() - started < 15  # did not wait for the slow receiver
        assert client.get("/v1/get_result", params={"id": slow_task}).json()["webhook_status"] == "pending"


def test_undelivered_events_survive_a_restart(start_server, receivers, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"  # nothing listens yet: connection refused
    data_dir = tmp_path / "shared"
    first = start_server(data_dir, **{**FAST_RETRIES, "webhook_backoff_s": 1})
    with first.client() as client:
        task_id = submit(client, webhook_url=url)["id"]
        wait_for(client, task_id)
        state = webhook_state(client, task_id, "pending")
    first.kill()
    receiver = receivers(port=port)
    second = start_server(data_dir, **FAST_RETRIES)
    (call,) = receiver.wait_calls(1)
    assert json.loads(call["body"])["id"] == task_id
    with second.client() as client:
        assert webhook_state(client, task_id, "delivered")["webhook_attempts"] >= state["webhook_attempts"] + 1


def test_moderated_requests_also_call_the_webhook(start_server, receivers):
    receiver = receivers()
    server = start_server(blocked_terms="contraband", **FAST_RETRIES)
    with server.client() as client:
        answer = submit(client, prompt="add contraband", webhook_url=receiver.url)
    assert answer["status"] == "Request Moderated"
    payload = json.loads(receiver.wait_calls(1)[0]["body"])
    assert payload["status"] == "Request Moderated" and payload["result"] is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data",
                                 "http://10.1.2.3/hook", "http://[::1]:8080/hook", "http://localhost/hook"])
def test_webhook_urls_to_private_addresses_are_refused(server, url):
    with server.client() as client:
        response = client.post(ROUTE, json={"prompt": "x", "input_image": b64(image_bytes()), "webhook_url": url})
    assert response.status_code == 422
    assert "non-public address" in response.json()["detail"][0]["msg"]
