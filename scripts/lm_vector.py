#!/usr/bin/env python3
"""Linearized Matrix LPDU -> PDU test vector (tests/vectors/lm-lpdu-pdu.json).

This is an independent cross-check of the Rust implementation: it recomputes
canonical JSON, redaction, the LPDU and PDU content hashes, both Ed25519
signatures and the reference-hash IDs from first principles (spec digest
sections 4, 4.1, 5 and 6). It must use ONLY the Python standard library: no
pip packages, no `cryptography`; Ed25519 is written out from RFC 8032 s5.1.

  python3 scripts/lm_vector.py --write   compute and write the vector file
  python3 scripts/lm_vector.py           recompute from the file's inputs and
                                         check every field byte for byte
"""
import base64, copy, hashlib, json, sys
from pathlib import Path

VECTOR = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "lm-lpdu-pdu.json"
DESCRIPTION = ("A participant's LPDU (hashes.lpdu, origin signature, LPDU ID) completed by the hub "
               "into a PDU (auth/prev events, hashes.sha256, hub signature, event ID).")
SPEC_SEED = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

# ---- base64 and canonical JSON ---------------------------------------------------------------
def b64(b): return base64.b64encode(b).decode().rstrip("=")
def b64url(b): return base64.urlsafe_b64encode(b).decode().rstrip("=")
def unb64(s): return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)

def _check_json(v):
    if isinstance(v, float):
        raise ValueError(f"canonical JSON forbids floats: {v!r}")
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**53) + 1 <= v <= 2**53 - 1:
        raise ValueError(f"integer out of canonical JSON range: {v}")
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str): raise ValueError(f"non-string key {k!r}")
            _check_json(x)
    elif isinstance(v, list):
        for x in v: _check_json(x)

def canonical(obj):
    """Matrix canonical JSON (keys sorted by code point, no whitespace, raw UTF-8)."""
    _check_json(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")

# ---- Ed25519 (RFC 8032 s5.1), extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z -----
P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

def _recover_x(y, sign):
    if y >= P: return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0: return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P: x = x * SQRT_M1 % P
    if (x * x - x2) % P: return None
    return P - x if (x & 1) != sign else x

_BY = 4 * pow(5, P - 2, P) % P
_BX = _recover_x(_BY, 0)
BASE = (_BX, _BY, 1, _BX * _BY % P)
IDENTITY = (0, 1, 1, 0)

def _add(p, q):
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)

def _mul(s, p):
    q = IDENTITY
    while s:
        if s & 1: q = _add(q, p)
        p, s = _add(p, p), s >> 1
    return q

def _equal(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % P == 0 and (p[1] * q[2] - q[1] * p[2]) % P == 0

def _encode(p):
    zi = pow(p[2], P - 2, P)
    x, y = p[0] * zi % P, p[1] * zi % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")

def _decode(s):
    if len(s) != 32: return None
    y = int.from_bytes(s, "little")
    x = _recover_x(y & ((1 << 255) - 1), y >> 255)
    return None if x is None else (x, y & ((1 << 255) - 1), 1, x * (y & ((1 << 255) - 1)) % P)

def _h(*parts): return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")

def _expand(seed):
    h = hashlib.sha512(seed).digest()
    a = int.from_bytes(h[:32], "little")
    a = (a & ((1 << 254) - 8)) | (1 << 254)
    return a, h[32:]

def public_key(seed): return _encode(_mul(_expand(seed)[0], BASE))

def sign(seed, msg):
    a, prefix = _expand(seed)
    pub = _encode(_mul(a, BASE))
    r = _h(prefix, msg) % L
    rs = _encode(_mul(r, BASE))
    s = (r + _h(rs, pub, msg) * a) % L
    return rs + s.to_bytes(32, "little")

def verify(pub, msg, sig):
    a, r = _decode(pub), _decode(sig[:32]) if len(sig) == 64 else None
    if a is None or r is None: return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L: return False
    k = _h(sig[:32], pub, msg) % L
    return _equal(_mul(8 * s, BASE), _add(_mul(8, r), _mul(8 * k, a)))

def self_test():
    seed = unb64(SPEC_SEED)
    pub, sig = public_key(seed), sign(seed, canonical({}))
    want_pub = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
    want_sig = "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
    if b64(pub) != want_pub or b64(sig) != want_sig or not verify(pub, b"{}", sig) \
            or verify(pub, b"{ }", sig):
        sys.exit("lm vector: FATAL: Ed25519 self-test against the Matrix spec vector failed")

# ---- Linearized Matrix event rules (room version ...linearized-matrix.02) -------------------
TOP_KEEP = {"auth_events", "content", "hashes", "hub_server", "origin_server_ts", "prev_events",
            "room_id", "sender", "signatures", "state_key", "type"}
CONTENT_KEEP = {
    "m.room.member": {"membership"},
    "m.room.join_rules": {"join_rule"},
    "m.room.power_levels": {"ban", "events", "events_default", "invite", "kick", "redact",
                            "state_default", "users", "users_default"},
    "m.room.history_visibility": {"history_visibility"},
}

def redact(ev):
    out = {k: copy.deepcopy(v) for k, v in ev.items() if k in TOP_KEEP}
    content = ev.get("content", {})
    if ev.get("type") != "m.room.create":
        keep = CONTENT_KEEP.get(ev.get("type"), set())
        content = {k: v for k, v in content.items() if k in keep}
    out["content"] = copy.deepcopy(content)
    return out

def strip(ev, *keys): return {k: v for k, v in ev.items() if k not in keys}
def signing_bytes(ev): return canonical(strip(redact(ev), "signatures", "unsigned"))
def reference_id(ev): return "$" + b64url(hashlib.sha256(signing_bytes(ev)).digest())

def lpdu_hash(lpdu):
    return b64(hashlib.sha256(canonical(strip(lpdu, "signatures", "unsigned", "hashes"))).digest())

def pdu_hash(pdu):
    body = strip(pdu, "signatures", "unsigned", "hashes")
    if "lpdu" in pdu.get("hashes", {}): body["hashes"] = {"lpdu": pdu["hashes"]["lpdu"]}
    return b64(hashlib.sha256(canonical(body)).digest())

def add_signature(ev, server, key_id, seed):
    sig = b64(sign(seed, signing_bytes(ev)))
    ev.setdefault("signatures", {}).setdefault(server, {})[key_id] = sig

def compute(inp):
    """All derived fields from the inputs (room_version, origin, hub, lpdu_input, auth/prev)."""
    o, h = inp["origin"], inp["hub"]
    o_seed, h_seed = unb64(o["seed"]), unb64(h["seed"])
    lpdu = copy.deepcopy(inp["lpdu_input"])
    lh = lpdu_hash(lpdu)
    lpdu["hashes"] = {"lpdu": {"sha256": lh}}
    add_signature(lpdu, o["server_name"], o["key_id"], o_seed)
    pdu = copy.deepcopy(lpdu)
    pdu["auth_events"], pdu["prev_events"] = list(inp["auth_events"]), list(inp["prev_events"])
    ph = pdu_hash(pdu)
    pdu["hashes"]["sha256"] = ph
    add_signature(pdu, h["server_name"], h["key_id"], h_seed)
    out = {
        "description": DESCRIPTION, "room_version": inp["room_version"],
        "origin": {**o, "public_key": b64(public_key(o_seed))},
        "hub": {**h, "public_key": b64(public_key(h_seed))},
        "lpdu_input": inp["lpdu_input"], "lpdu_hash": lh, "lpdu_signed": lpdu,
        "lpdu_signed_canonical": canonical(lpdu).decode("utf-8"), "lpdu_id": reference_id(lpdu),
        "auth_events": inp["auth_events"], "prev_events": inp["prev_events"],
        "pdu_hash": ph, "pdu": pdu, "pdu_canonical": canonical(pdu).decode("utf-8"),
        "event_id": reference_id(pdu),
    }
    verify_pdu(out)
    return out

def verify_pdu(v):
    """Receiver-side checks: both hashes and both signatures, from the PDU alone."""
    pdu, o, h = v["pdu"], v["origin"], v["hub"]
    lpdu_form = strip(pdu, "auth_events", "prev_events")
    lpdu_form["hashes"] = {"lpdu": pdu["hashes"]["lpdu"]}
    checks = {
        "lpdu hash": lpdu_hash(lpdu_form) == pdu["hashes"]["lpdu"]["sha256"],
        "pdu hash": pdu_hash(pdu) == pdu["hashes"]["sha256"],
        "origin signature": verify(unb64(o["public_key"]), signing_bytes(lpdu_form),
                                   unb64(pdu["signatures"][o["server_name"]][o["key_id"]])),
        "hub signature": verify(unb64(h["public_key"]), signing_bytes(pdu),
                                unb64(pdu["signatures"][h["server_name"]][h["key_id"]])),
        "lpdu id from pdu": reference_id(lpdu_form) == v["lpdu_id"],
    }
    for name, ok in checks.items():
        if not ok: sys.exit(f"lm vector: verification failed: {name}")
    return len(checks)

INPUTS = {
    "room_version": "org.matrix.i-d.ralston-mimi-linearized-matrix.02",
    "origin": {"server_name": "part.example", "key_id": "ed25519:1", "seed": SPEC_SEED},
    "hub": {"server_name": "hub.example", "key_id": "ed25519:hub1", "seed": b64(bytes(range(1, 33)))},
    "lpdu_input": {"room_id": "!lmvector:hub.example", "type": "m.room.message",
                   "sender": "@alice:part.example", "origin_server_ts": 1700000000000,
                   "hub_server": "hub.example",
                   "content": {"msgtype": "m.text", "body": "hello from the participant \u2713 \u65e5\u672c"}},
    "auth_events": ["$Y3JlYXRl", "$cG93ZXI", "$YWxpY2Vqb2lu"],
    "prev_events": ["$cHJldmlvdXM"],
}

def render(v): return json.dumps(v, indent=2, ensure_ascii=False, sort_keys=True) + "\n"

def main(argv):
    self_test()
    if argv == ["--write"]:
        VECTOR.parent.mkdir(parents=True, exist_ok=True)
        VECTOR.write_text(render(compute(INPUTS)), encoding="utf-8")
        print(f"lm vector: wrote {VECTOR}")
        return 0
    if argv:
        sys.exit("usage: lm_vector.py [--write]")
    text = VECTOR.read_text(encoding="utf-8")
    stored = json.loads(text)
    missing = [k for k in INPUTS if k not in stored]
    if missing:
        print(f"lm vector: MISMATCH: input field {missing[0]!r} missing from the file")
        return 1
    got = compute({k: stored[k] for k in INPUTS})
    n = 1  # the Ed25519 self-test
    for key in list(got) + [k for k in stored if k not in got]:  # derivation order
        if key not in stored or key not in got or canonical(got[key]) != canonical(stored[key]):
            print(f"lm vector: MISMATCH in field {key!r}")
            return 1
        n += 1
    n += verify_pdu(stored)  # receiver-side hash/signature checks on the stored PDU
    if render(got) != text:
        print("lm vector: MISMATCH: file bytes differ from the rendered recomputation")
        return 1
    print(f"lm vector: {n + 1} checks passed")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
