"""What checking a machine's OAuth2 access token costs per request, against a static token.

Serves a JWKS (an RSA-2048 and a P-256 key made here) on 127.0.0.1 with a discovery
document, then times ``ClientRegistry.identify`` -- what ``admit_client`` calls on every
API request -- in the same process, same run:

* **baseline**: a static token (one SHA-256 and a constant-time compare per listed client,
  five clients listed);
* a token seen for the first time (RS256 and ES256): header, signature, claims, roles;
* the same token again: remembered by its SHA-256 until its ``exp``.

Prints figures; asserts nothing.

    .venv/bin/python bench/access_tokens.py [--rounds 3000]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import figure

from henvis.access_tokens import AccessTokenPolicy, AccessTokenVerifier, JwksSource
from henvis.auth import ApiClient, ClientRegistry, hash_token


def serve_jwks(keys: list) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.endswith("/.well-known/openid-configuration"):
                body = {"jwks_uri": f"{issuer}/jwks"}
            else:
                body = {"keys": [key.as_dict(private=False) for key in keys]}
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}/realms/bench"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, issuer


def per_call_us(call: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        call()
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3000)
    args = parser.parse_args()

    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa", "use": "sig"})
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec", "use": "sig"})
    server, issuer = serve_jwks([rsa, ec])
    static = "hv_bench-static-token-0123456789"
    listed = [ApiClient(name=f"client-{n}", role="police", token_sha256=hash_token(f"{static}{n}")) for n in range(4)]
    listed.append(ApiClient(name="police", role="police", token_sha256=hash_token(static)))

    def registry(cache_size: int) -> ClientRegistry:
        policy = AccessTokenPolicy(issuer=issuer, audience="henvis-consent-api")
        return ClientRegistry(listed, AccessTokenVerifier(policy, JwksSource(issuer), cache_size=cache_size))

    def token(key, alg: str, serial: int) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": "henvis-consent-api",
            "exp": now + 600,
            "azp": "police-case-system",
            "henvis_roles": ["police"],
            "jti": str(serial),
        }
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key, algorithms=[alg])

    uncached = registry(cache_size=0)
    cached = registry(cache_size=1024)
    uncached.identify(token(rsa, "RS256", -1))  # fetch the keys outside the timing
    cached.identify(token(rsa, "RS256", -2))

    print(f"identify() per request, {args.rounds} calls each")
    baseline = per_call_us(lambda: cached.identify(static), args.rounds)
    figure("static token (baseline)", baseline, "µs")
    for key, alg in ((rsa, "RS256"), (ec, "ES256")):
        fresh = [token(key, alg, n) for n in range(args.rounds)]
        tokens = iter(fresh)
        first = per_call_us(lambda tokens=tokens: uncached.identify(next(tokens)), args.rounds)
        figure(f"{alg} token, first time", first, "µs", baseline)
        cached.identify(fresh[0])
        again = per_call_us(lambda same=fresh[0]: cached.identify(same), args.rounds)
        figure(f"{alg} token, seen before", again, "µs", baseline)
    server.shutdown()


if __name__ == "__main__":
    main()
