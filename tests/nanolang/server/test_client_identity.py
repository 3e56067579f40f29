"""client_identity: the ``user`` field, else the API key, else the peer's address (not its
port); keys are kept as digests only."""

from __future__ import annotations

from starlette.requests import Request

from nanolang.server.client_identity import client_identity


def request(
    authorization: str | None = None, peer: tuple[str, int] | None = ("10.0.0.1", 5)
) -> Request:
    headers = [] if authorization is None else [(b"authorization", authorization.encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "client": peer}
    return Request(scope)


def test_user_then_key_then_peer() -> None:
    keyed = request("Bearer sk-one")
    assert client_identity(keyed, "alice").startswith("user:")
    assert client_identity(keyed, "alice") == client_identity(request(), "alice")
    assert client_identity(keyed, "alice") != client_identity(keyed, "bob")
    assert client_identity(keyed).startswith("key:")
    assert client_identity(keyed) == client_identity(request("bearer  sk-one ", ("10.0.0.2", 9)))
    assert client_identity(keyed) != client_identity(request("Bearer sk-two"))
    assert "sk-one" not in client_identity(keyed)  # a digest, not the key
    assert client_identity(request()) == "peer:10.0.0.1"
    assert client_identity(request(peer=("10.0.0.1", 6))) == "peer:10.0.0.1"
    assert client_identity(request("Bearer ")) == "peer:10.0.0.1"  # an empty key is no key
    assert client_identity(request(peer=None), "") == "peer:unknown"
