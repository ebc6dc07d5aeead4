"""Credentials and the password-hashing budget against a real ``im serve``: per-address and
node-wide limits answered at once, abandoned logins dropped, tokens revoked by LOGOUT,
forged subjects refused, old password hashes replaced at login, weak secrets refused."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time

import jwt
import pytest
from harness import ServeProcess, new_user

from edgeim.core_ext.protocol import ErrorCode
from edgeim.sdk import Client, ServerError


async def code_of(request) -> int:
    with pytest.raises(ServerError) as err:
        await request
    return err.value.code


async def test_the_per_address_budget_refuses_at_once_and_token_logins_go_on(serve_factory):
    server = serve_factory(login_rate=0.01, login_burst=3)
    async with Client(server.url) as setup:
        await setup.register("dave", "secret-pw")  # 1 of the 3
        first = await setup.login("dave", "secret-pw", "web")  # 2 of the 3
    async with Client(server.url) as c:
        assert await code_of(c.login("dave", "wrong-pw", "ios")) == ErrorCode.BAD_CREDENTIALS  # 3 of 3
        assert await code_of(c.login("dave", "wrong-pw", "ios")) == ErrorCode.RATE_LIMITED
        assert await code_of(c.register("erin", "secret-pw")) == ErrorCode.RATE_LIMITED
        assert (await c.token_login(first.token, "ios")).user_id == first.user_id  # no hashing: not charged


async def test_a_full_backlog_is_unavailable_at_once(serve_factory):
    # slow hashes (64 MiB, 3 passes), room for one waiting: most of a burst is refused
    server = serve_factory(password_memory_kib=65536, password_time_cost=3, login_backlog=1)
    clients = [Client(server.url) for _ in range(8)]
    for client in clients:
        await client.connect()
    try:
        results = await asyncio.gather(*(c.register(f"burst{n}", "secret-pw") for n, c in enumerate(clients)),
                                       return_exceptions=True)
    finally:
        for client in clients:
            await client.close()
    refused = [r for r in results if isinstance(r, ServerError)]
    assert refused and {r.code for r in refused} == {ErrorCode.UNAVAILABLE}
    assert any(isinstance(r, int) for r in results)  # the ones admitted were served


async def test_logins_whose_clients_left_are_dropped_before_they_hash(serve_factory):
    server = serve_factory(password_memory_kib=65536, password_time_cost=3, log_level="debug")
    abandoned = 12
    for n in range(abandoned):
        client = Client(server.url)
        await client.connect()
        client.send_raw(_login_frame(n))
        await client.close()  # gone before its turn
    async with Client(server.url) as witness:  # the node still answers, and sooner than 12 hashes
        await witness.register("witness", "secret-pw")
    server.stop()
    dropped = [e for e in map(json.loads, server.stderr.splitlines()) if e["msg"] == "password check dropped"]
    # a hash that had already started runs to its end (one per core at most)
    assert len(dropped) >= abandoned - (os.cpu_count() or 1) - 1


def _login_frame(n: int) -> bytes:
    from edgeim.core_ext import bodies
    from edgeim.core_ext.codec import encode_frame
    from edgeim.core_ext.protocol import Op
    return encode_frame(Op.LOGIN, 1, 0, bodies.encode(bodies.Login(username=f"nobody{n}", password="secret-pw",
                                                                  terminal="web")))


async def test_logout_revokes_its_token_only(server: ServeProcess):
    async with Client(server.url) as phone, Client(server.url) as laptop:
        name, _ = await new_user(phone, "ios")
        kept = await laptop.login(name, "secret-pw", "desktop")
        ended = phone.token
        await phone.logout()
    async with Client(server.url) as again:
        assert await code_of(again.token_login(ended, "ios")) == ErrorCode.TOKEN_INVALID
        assert (await again.token_login(kept.token, "ios")).user_id == kept.user_id


@pytest.mark.parametrize("claims", [
    {"sub": str(2**70), "jti": "x"},  # a subject beyond every id
    {"sub": "-1", "jti": "x"},
    {"sub": "1"},  # no token id: cannot be revoked, so not accepted
], ids=["sub-2^70", "sub-negative", "no-jti"])
async def test_a_signed_token_with_a_bad_subject_is_invalid_not_internal(server: ServeProcess, claims):
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, server.env["IM_TOKEN_SECRET"], algorithm="HS256")
    async with Client(server.url) as c:
        assert await code_of(c.token_login(token, "web")) == ErrorCode.TOKEN_INVALID
        await c.ping()


async def test_an_old_kind_or_cost_of_hash_is_replaced_at_login(serve_factory):
    server = serve_factory()
    async with Client(server.url) as c:
        await c.register("fay", "secret-pw")
    server.stop()
    db = sqlite3.connect(server.data_dir / "edgeim.db")
    salt = os.urandom(16)
    digest = hashlib.scrypt(b"secret-pw", salt=salt, n=1 << 10, r=8, p=1)
    old = "$".join(("scrypt", "10", "8", "1", base64.b64encode(salt).decode(), base64.b64encode(digest).decode()))
    db.execute("UPDATE users SET password_hash = ? WHERE username = 'fay'", (old,))
    db.commit()
    server.env["IM_PASSWORD_MEMORY_KIB"] = "512"  # and a new cost
    server.start()
    async with Client(server.url) as c:
        await c.login("fay", "secret-pw", "web")
        assert await code_of(c.login("fay", "secret-pw", "web")) == ErrorCode.ALREADY_AUTHENTICATED
    (stored,) = db.execute("SELECT password_hash FROM users WHERE username = 'fay'").fetchone()
    db.close()
    assert stored.startswith("$argon2id$") and "m=512," in stored
    async with Client(server.url) as c:  # and it still logs in
        await c.login("fay", "secret-pw", "ios")


@pytest.mark.parametrize(("env", "message"), [
    ({"IM_TOKEN_SECRET": "short"}, "at least 32 characters"),
    ({"IM_TOKEN_SECRET_FILE": "/nonexistent/secret"}, "cannot read token_secret_file"),
    ({"IM_TOKEN_SECRET": "x" * 40, "IM_TOKEN_SECRET_FILE": "/etc/hostname"}, "not both"),
    ({"IM_TOKEN_SECRET": "a" * 32}, "fewer than 8 different characters"),
    ({"IM_TOKEN_SECRET": "hunter2" * 5}, "fewer than 8 different characters"),
    ({"IM_ADMIN_TOKEN": "ab" * 10}, "admin_token has fewer than 6 different characters"),
], ids=["short", "missing-file", "both", "one-letter", "a-word-repeated", "admin-token"])
def test_weak_or_unreadable_secrets_are_refused(tmp_path, env, message):
    done = subprocess.run([sys.executable, "-m", "edgeim.cli", "serve", "--port", "0", "--data-dir", str(tmp_path)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr and "listening" not in done.stdout


#: a secret as an operator makes one (random hex)
SECRET = "9f1c2b7e4d8a0356" * 3


async def test_the_secret_file_is_the_one_that_signs(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET + "\n")
    node = ServeProcess(tmp_path / "data", token_secret_file=secret)
    node.env.pop("IM_TOKEN_SECRET")  # the harness gives each node a secret of its own: use the file
    node.start()
    try:
        async with Client(node.url) as c:
            await c.register("gus", "secret-pw")
            token = (await c.login("gus", "secret-pw", "web")).token
    finally:
        node.stop()
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["jti"]


class ClientFrom(Client):
    """A client whose connection comes from ``source`` (another loopback address): the
    node sees another client address."""

    def __init__(self, url: str, source: str) -> None:
        super().__init__(url)
        self._source = source

    async def _open(self, url: str) -> None:
        from picows import ws_connect

        from edgeim.core_ext.protocol import MAX_FRAME_SIZE, SUBPROTOCOL_PREFIX, VERSION
        from edgeim.sdk import client as sdk

        def bound(_: object) -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((self._source, 0))
            return sock

        self._disconnected.clear()
        self.close_code = None
        self.url = url
        self._transport, _ = await ws_connect(lambda: sdk._Listener(self), url, socket_factory=bound,
                                              extra_headers={"Sec-WebSocket-Protocol": f"{SUBPROTOCOL_PREFIX}{VERSION}"},
                                              max_frame_size=MAX_FRAME_SIZE)


async def test_guessing_one_account_from_many_addresses_is_locked_before_hashing(serve_factory):
    # slow hashes and a short backlog: guesses that reached the hashers would crowd out
    # the bystanders (5001). The per-account limit: 5 failures, then locked for 10 minutes
    # (the default first lock is 1 s: long enough for a test only if it is fast); the
    # per-address budget at its default (5/s, burst 30: no address reaches it here)
    server = serve_factory(password_memory_kib=32768, password_time_cost=2, login_backlog=4, login_rate=5,
                           login_burst=30, login_account_failures=5, login_account_lock=600)
    async with Client(server.url) as setup:
        await setup.register("victim", "secret-pw")
        await setup.register("bystander", "other-pw")
        kept = await setup.login("victim", "secret-pw", "web")  # a device already logged in

    async def guess(source: str) -> list[int]:
        async with ClientFrom(server.url, source) as c:
            return [await code_of(c.login("victim", f"guess-{source}-{n}", "web")) for n in range(10)]

    async def bystander(n: int) -> list[int]:  # three at once at most, with the one guess hashing: 4
        ids = []
        for k in range(4):
            async with Client(server.url) as c:
                ids.append((await c.login("bystander", "other-pw", f"t{n}-{k}")).user_id)
        return ids

    results = await asyncio.gather(*(guess(f"127.0.0.{10 + n}") for n in range(8)),
                                   *(bystander(n) for n in range(3)))
    guesses = [code for codes in results[:8] for code in codes]
    logins = [user for ids in results[8:] for user in ids]

    assert len(logins) == 12 and len(set(logins)) == 1  # every bystander login succeeded
    assert set(guesses) == {ErrorCode.BAD_CREDENTIALS, ErrorCode.RATE_LIMITED}
    assert guesses.count(ErrorCode.BAD_CREDENTIALS) == 5  # then locked: the other 75 never hashed
    async with ClientFrom(server.url, "127.0.0.99") as fresh:  # a new address and connection: still locked
        assert await code_of(fresh.login("victim", "secret-pw", "ios")) == ErrorCode.RATE_LIMITED
        assert (await fresh.token_login(kept.token, "ios")).user_id == kept.user_id  # tokens are not guessed


async def test_a_missing_account_is_locked_like_an_existing_one(serve_factory):
    server = serve_factory(login_account_failures=3, login_account_lock=600)
    async with Client(server.url) as c:
        await c.register("present", "secret-pw")
        codes = {name: [await code_of(c.login(name, "wrong-pw", "web")) for _ in range(5)]
                 for name in ("present", "absent")}

    expected = [ErrorCode.BAD_CREDENTIALS] * 3 + [ErrorCode.RATE_LIMITED] * 2
    assert codes == {"present": expected, "absent": expected}  # nothing tells which name exists
