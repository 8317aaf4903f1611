"""The auth flow without a server: each rule as challenges in, the next request out."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from gadgetstore.engine.registry.authfile import Credentials
from gadgetstore.engine.registry.authflow import (
    AuthFlow,
    RegistryAuth,
    Send,
    TokenAnswer,
    TokenRequest,
    Unauthorized,
)
from gadgetstore.engine.registry.errors import AuthError

SCOPES = ("repository:a/b:pull",)
REALM = "https://registry.example/token"
BEARER = f'Bearer realm="{REALM}",service="svc",scope="repository:a/b:pull"'
ALICE = Credentials("alice", "s3cret")
ALICE_BASIC = "Basic " + base64.b64encode(b"alice:s3cret").decode()


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def registry(credentials: Credentials | None = None, *, scheme: str = "https", stored_only: bool = False,
             trusted: frozenset[str] = frozenset()) -> RegistryAuth:
    return RegistryAuth("registry.example", scheme, "registry.example", credentials, stored_only, trusted)


def flow(auth: RegistryAuth, clock: Clock, scopes: tuple[str, ...] = SCOPES) -> AuthFlow:
    return AuthFlow(auth, scopes, clock, wall_clock=lambda: 1_000_000.0)


def challenged(*values: str, detail: str = "", sent_at: float = 100.0) -> Unauthorized:
    return Unauthorized(values, detail, sent_at)


def token(value: str, expires_in: int = 300) -> TokenAnswer:
    return TokenAnswer(200, json.dumps({"token": value, "expires_in": expires_in}).encode())


def query(request: TokenRequest) -> dict[str, list[str]]:
    return parse_qs(urlsplit(request.url).query)


def test_anonymous_token_then_the_request_again_with_it() -> None:
    clock, auth = Clock(), registry()
    f = flow(auth, clock)
    assert f.start() == Send(None)
    step = f.unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    assert (step.method, step.body, step.key) == ("GET", None, SCOPES)
    assert step.url.startswith(REALM + "?")
    assert query(step) == {"service": ["svc"], "scope": ["repository:a/b:pull"]}
    assert dict(step.headers) == {"Accept": "application/json"}  # no Authorization: anonymous
    assert f.token_answer(step, token("t0k")) == Send("Bearer t0k")
    assert flow(auth, clock).start() == Send("Bearer t0k")  # the next request sends it up front


def test_the_challenges_scopes_join_the_requests_and_the_token_is_kept_under_the_requests() -> None:
    clock, auth = Clock(), registry()
    f = flow(auth, clock, ("repository:a/b:pull,push",))
    step = f.unauthorized(challenged(f'Bearer realm="{REALM}",scope="repository:c/d:pull"'))
    assert isinstance(step, TokenRequest)
    assert query(step) == {"scope": ["repository:a/b:pull,push", "repository:c/d:pull"]}
    assert step.key == ("repository:a/b:pull,push",)
    f.token_answer(step, token("t"))
    assert flow(auth, clock, ("repository:a/b:pull,push",)).start() == Send("Bearer t")
    assert flow(auth, clock).start() == Send(None)  # another scope set has no token yet


def test_credentials_go_to_a_realm_on_the_registrys_host_as_basic_with_the_account() -> None:
    step = flow(registry(ALICE), Clock()).unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    assert dict(step.headers)["Authorization"] == ALICE_BASIC
    assert query(step)["account"] == ["alice"]


@pytest.mark.parametrize("realm", ["https://auth.elsewhere.example/token", "https://registry.example.evil/token"])
def test_no_credentials_to_a_realm_on_another_host(realm: str) -> None:
    step = flow(registry(ALICE), Clock()).unauthorized(challenged(f'Bearer realm="{realm}",service="svc"'))
    assert isinstance(step, TokenRequest)
    assert "Authorization" not in dict(step.headers) and "account" not in query(step)


def test_credentials_to_a_realm_host_the_user_trusts() -> None:
    auth = registry(ALICE, trusted=frozenset({"auth.docker.io"}))
    step = flow(auth, Clock()).unauthorized(challenged('Bearer realm="https://auth.docker.io/token",service="x"'))
    assert isinstance(step, TokenRequest)
    assert dict(step.headers)["Authorization"] == ALICE_BASIC


@pytest.mark.parametrize(("realm", "why"), [
    ("http://registry.example/token", "registry uses https, realm uses plain http"),
    ("http://169.254.169.254/latest/meta-data", "plain http"),
    ("https://10.0.0.1/token", "internal address"),
    ("file:///etc/passwd", "not an http"),
    ("", "not an http"),
])
def test_a_realm_that_fails_the_checks_is_refused_before_any_request(realm: str, why: str) -> None:
    with pytest.raises(AuthError, match=f"refusing token realm .*{why}"):
        flow(registry(ALICE), Clock()).unauthorized(challenged(f'Bearer realm="{realm}"'))


def test_an_identity_token_is_an_oauth2_refresh_grant() -> None:
    auth = registry(Credentials(identity_token="idt"))
    step = flow(auth, Clock()).unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    assert (step.method, step.url) == ("POST", REALM)
    assert step.body is not None
    assert parse_qs(step.body.decode()) == {"grant_type": ["refresh_token"], "refresh_token": ["idt"],
                                            "client_id": ["gadgetstore"], "service": ["svc"],
                                            "scope": ["repository:a/b:pull"]}
    assert dict(step.headers)["Content-Type"] == "application/x-www-form-urlencoded"


def test_an_identity_token_never_goes_to_a_realm_elsewhere() -> None:
    auth = registry(Credentials(identity_token="idt"))
    step = flow(auth, Clock()).unauthorized(challenged('Bearer realm="https://auth.elsewhere.example/t"'))
    assert isinstance(step, TokenRequest)
    assert (step.method, step.body) == ("GET", None) and "idt" not in step.url


def test_basic_only_with_a_username_and_password() -> None:
    with pytest.raises(AuthError, match=r"authentication required \(401 Unauthorized\); log in first"):
        flow(registry(), Clock()).unauthorized(challenged('Basic realm="x"'))
    with pytest.raises(AuthError, match="log in first"):  # an identity token is no password
        flow(registry(Credentials(identity_token="idt")), Clock()).unauthorized(challenged('Basic realm="x"'))
    auth = registry(ALICE)
    f = flow(auth, Clock())
    assert f.unauthorized(challenged('Basic realm="x"')) == Send(ALICE_BASIC)
    with pytest.raises(AuthError, match="401 Unauthorized: invalid username or password"):
        f.unauthorized(challenged('Basic realm="x"'))
    assert flow(auth, Clock()).start() == Send(ALICE_BASIC)  # later requests send it up front


def test_bearer_wins_when_both_are_offered_and_other_schemes_are_unusable() -> None:
    step = flow(registry(ALICE), Clock()).unauthorized(challenged('Basic realm="x"', BEARER))
    assert isinstance(step, TokenRequest)
    with pytest.raises(AuthError, match="with no usable challenge"):
        flow(registry(ALICE), Clock()).unauthorized(challenged('Negotiate abc'))
    with pytest.raises(AuthError, match="with no usable challenge"):
        flow(registry(ALICE), Clock()).unauthorized(challenged())


def test_a_token_that_came_after_the_request_was_sent_is_reused() -> None:
    """Two requests sent together: the second's 401 comes once the first got a token."""
    clock, auth = Clock(), registry()
    first, second = flow(auth, clock), flow(auth, clock)
    assert first.start() == second.start() == Send(None)
    ask = first.unauthorized(challenged(BEARER, sent_at=100.0))
    assert isinstance(ask, TokenRequest)
    clock.now = 101.0
    first.token_answer(ask, token("t0k"))
    clock.now = 102.0
    again = second.unauthorized(challenged(BEARER, sent_at=100.5))
    assert isinstance(again, TokenRequest) and again.reuse_since == 100.5
    assert second.reused(again) == Send("Bearer t0k")


def test_a_token_older_than_the_request_is_not_reused() -> None:
    """The request carried that token and was refused: a new one is asked for."""
    clock, auth = Clock(), registry()
    f = flow(auth, clock)
    f.token_answer(TokenRequest("GET", REALM, (), None, REALM, SCOPES, None), token("old"))
    clock.now = 110.0
    step = flow(auth, clock).unauthorized(challenged(BEARER, sent_at=105.0))
    assert isinstance(step, TokenRequest)
    assert flow(auth, clock).reused(step) is None


def test_a_stale_token_is_not_sent_nor_reused() -> None:
    clock, auth = Clock(), registry()
    f = flow(auth, clock)
    ask = f.unauthorized(challenged(BEARER, sent_at=100.0))
    assert isinstance(ask, TokenRequest)
    f.token_answer(ask, token("short", expires_in=60))
    clock.now = 100.0 + 60
    assert flow(auth, clock).start() == Send(None)
    late = flow(auth, clock).unauthorized(challenged(BEARER, sent_at=99.0))
    assert isinstance(late, TokenRequest) and flow(auth, clock).reused(late) is None


@pytest.mark.parametrize("error", ["invalid_token", "insufficient_scope"])
def test_a_refused_token_is_renewed_once(error: str) -> None:
    clock, auth = Clock(), registry()
    f = flow(auth, clock)
    f.token_answer(TokenRequest("GET", REALM, (), None, REALM, SCOPES, None), token("expired"))
    renewal = f.unauthorized(challenged(BEARER, sent_at=100.0))
    assert isinstance(renewal, TokenRequest) and renewal.reuse_since == 100.0
    assert f.token_answer(renewal, token("fresh")) == Send("Bearer fresh")
    forced = f.unauthorized(challenged(BEARER + f',error="{error}"', sent_at=101.0))
    assert isinstance(forced, TokenRequest) and forced.reuse_since is None  # a new token whatever came
    assert f.reused(forced) is None
    assert f.token_answer(forced, token("fresher")) == Send("Bearer fresher")
    assert f.unauthorized(challenged(BEARER + f',error="{error}"')) is None  # the 401 stands


def test_a_second_401_without_a_token_error_is_final() -> None:
    f = flow(registry(), Clock())
    step = f.unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    f.token_answer(step, token("t"))
    with pytest.raises(AuthError, match=r"^registry\.example: 401 Unauthorized: denied: no$"):
        f.unauthorized(challenged(BEARER, detail="denied: no"))


@pytest.mark.parametrize(("status", "message"), [
    (401, "token request to https://registry.example/token failed: invalid username or password"),
    (500, r"token request to https://registry.example/token failed: status 500 \(boom\)"),
])
def test_a_token_request_that_fails(status: int, message: str) -> None:
    f = flow(registry(ALICE), Clock())
    step = f.unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    with pytest.raises(AuthError, match=message):
        f.token_answer(step, TokenAnswer(status, b"", "boom" if status == 500 else ""))


def test_a_token_answer_without_a_token_is_refused() -> None:
    f = flow(registry(), Clock())
    step = f.unauthorized(challenged(BEARER))
    assert isinstance(step, TokenRequest)
    with pytest.raises(AuthError, match=r"registry\.example token realm: token response has no token"):
        f.token_answer(step, TokenAnswer(200, b'{"expires_in": 60}'))


def test_a_plain_http_insecure_registry_gets_only_credentials_stored_for_it() -> None:
    insecure = registry(scheme="http", stored_only=True)
    for offered in (BEARER, 'Basic realm="x"'):
        with pytest.raises(AuthError, match="a plain-HTTP registry gets only credentials stored for it: "
                                            "gadgetstore login registry.example --insecure-registries "
                                            r"registry.example \(nope\)"):
            flow(insecure, Clock()).unauthorized(challenged(offered, detail="nope"))
    stored = registry(ALICE, scheme="http", stored_only=True)
    step = flow(stored, Clock()).unauthorized(challenged('Bearer realm="http://registry.example/token"'))
    assert isinstance(step, TokenRequest) and dict(step.headers)["Authorization"] == ALICE_BASIC
