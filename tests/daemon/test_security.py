"""Host and Origin checks against DNS rebinding and cross-site requests (fake engine, real app)."""

from __future__ import annotations

import aiohttp
import pytest

from .conftest import fake_daemon


@pytest.mark.parametrize("host, status", [
    ("127.0.0.1:7411", 200), ("localhost", 200), ("[::1]:7411", 200), ("app.localhost:80", 200),
    ("attacker.example", 403), ("127.attacker.example", 403), ("127.0.0.1.nip.io", 403),
    ("192.168.1.20:7411", 403),
])
async def test_only_loopback_host_names_are_answered(host, status):
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        async with s.get(d.url + "/v1/models", headers={"Host": host}) as response:
            assert response.status == status
        async with s.get(d.url + "/health", headers={"Host": host}) as response:
            assert response.status == status  # even the public route: rebinding reads nothing


@pytest.mark.parametrize("headers", [
    {"Origin": "https://example.com"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
])
async def test_browser_requests_are_refused_even_with_the_token(headers):
    async with fake_daemon() as d, aiohttp.ClientSession(headers=d.auth) as s:
        async with s.post(d.url + "/v1/completions", json={"prompt": "x"}, headers=headers) as response:
            assert response.status == 403
            assert "allowed_origins" in (await response.json())["error"]["message"]


@pytest.mark.parametrize("scheme, status", [("Bearer", 200), ("bearer", 200), ("BEARER", 200), ("Basic", 401)])
async def test_the_auth_schemes_name_is_case_insensitive(scheme, status):
    async with fake_daemon() as d, aiohttp.ClientSession() as s:
        token = d.auth["Authorization"].split(" ", 1)[1]
        async with s.get(d.url + "/v1/models", headers={"Authorization": f"{scheme}  {token}"}) as response:
            assert response.status == status


@pytest.mark.parametrize("headers, status", [
    # Claude Code sends both when ANTHROPIC_AUTH_TOKEN and ANTHROPIC_API_KEY are set: a stale one refused every request
    ({"Authorization": "Bearer stale", "x-api-key": "{token}"}, 200),
    ({"Authorization": "Bearer {token}", "x-api-key": "stale"}, 200),
    ({"Authorization": "Bearer stale", "x-goog-api-key": "stale"}, 401),
    ({"x-api-key": "stale"}, 401),
])
async def test_one_credential_holding_the_token_is_enough(headers, status):
    async with fake_daemon() as d, aiohttp.ClientSession() as s:
        token = d.auth["Authorization"].split(" ", 1)[1]
        sent = {name: value.format(token=token) for name, value in headers.items()}
        async with s.get(d.url + "/v1/models", headers=sent) as response:
            assert response.status == status
            if status == 401:
                assert "wrong token" in (await response.json())["error"]["message"]


async def test_claude_codes_probe_needs_no_token_and_reads_nothing():
    async with fake_daemon() as d, aiohttp.ClientSession() as s:
        async with s.head(d.url + "/") as response:
            assert response.status == 200 and await response.read() == b""
        async with s.get(d.url + "/") as response:  # no other method, with or without the token
            assert response.status == 405
        async with s.head(d.url + "/", headers={"Host": "attacker.example"}) as response:
            assert response.status == 403
