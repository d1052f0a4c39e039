#!/usr/bin/env python3
"""The Matrix user's side of scripts/demo, with nothing but the standard library.

  demo-client.py wait-ready URL PID TIMEOUT      poll URL until 200 (fails if PID exits first)
  demo-client.py get URL [PREFIX...]             print the body (only lines starting with a PREFIX)
  demo-client.py portal HS USER PASSWORD BOT SESSION TIMEOUT
        log in, create an unencrypted private room "MIMI portal", invite BOT and wait until it
        joined; the access token and room ID go to the JSON file SESSION
  demo-client.py talk HS SESSION                 send messages, an edit, a reply, a reaction and
                                                 a redaction as the user; prints what was sent
  demo-client.py wait-log BIN DATA_DIR COUNT TIMEOUT
        poll `BIN log list/show --json --decrypt` until a room holds COUNT decrypted MIMI
        messages; prints the MIMI room ID
  demo-client.py summary BIN DATA_DIR ROOM
        one line per decrypted MIMI message: its kind, text, and the log position of the message
        it edits, answers, reacts to or deletes (message IDs recomputed with `BIN mimi encode`
        and `BIN mimi id`); fails unless the log holds what `talk` sent, in order

Every wait is bounded and fails with a message saying what it waited for.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def die(message):
    print(f"demo-client: {message}", file=sys.stderr)
    sys.exit(1)


def request(method, url, token=None, body=None, timeout=10):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def call(method, hs, path, token=None, body=None):
    status, raw = request(method, hs + path, token, body)
    if status != 200:
        die(f"{method} {path} answered {status}: {raw.decode(errors='replace')[:300]}")
    return json.loads(raw or b"{}")


def q(segment):
    return urllib.parse.quote(segment, safe="")


def wait_ready(url, pid, timeout):
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            die(f"the process (pid {pid}) exited before {url} answered 200")
        try:
            status, _ = request("GET", url, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    die(f"{url} did not answer 200 within {timeout}s")


def get(url, *prefixes):
    status, raw = request("GET", url)
    if status != 200:
        die(f"GET {url} answered {status}")
    for line in raw.decode().splitlines():
        if not prefixes or line.startswith(prefixes):
            print(line)


def portal(hs, user, password, bot, session, timeout):
    login = call("POST", hs, "/_matrix/client/v3/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
    token = login["access_token"]
    print(f"logged in as {login['user_id']}")
    room = call("POST", hs, "/_matrix/client/v3/createRoom", token,
                {"preset": "private_chat", "name": "MIMI portal"})["room_id"]
    print(f"created the unencrypted room {room} \"MIMI portal\"")
    call("POST", hs, f"/_matrix/client/v3/rooms/{q(room)}/invite", token, {"user_id": bot})
    print(f"invited {bot}; waiting for the bridge to join", end="", flush=True)
    started = time.monotonic()
    while True:
        members = call("GET", hs, f"/_matrix/client/v3/rooms/{q(room)}/joined_members", token)["joined"]
        if bot in members:
            break
        if time.monotonic() - started > float(timeout):
            print()
            die(f"{bot} did not join {room} within {timeout}s (see the bridge log)")
        time.sleep(0.1)
    print(f" ... joined after {time.monotonic() - started:.1f}s")
    with open(session, "w") as f:
        json.dump({"hs": hs, "token": token, "room": room, "user_id": login["user_id"]}, f)


def talk(hs, session):
    with open(session) as f:
        s = json.load(f)
    token, room = s["token"], s["room"]
    n = [0]

    def send(event_type, content, what):
        n[0] += 1
        path = f"/_matrix/client/v3/rooms/{q(room)}/send/{event_type}/demo-{os.getpid()}-{n[0]}"
        event_id = call("PUT", hs, path, token, content)["event_id"]
        print(f"  {event_id}  {what}")
        return event_id

    def text(body):
        return send("m.room.message", {"msgtype": "m.text", "body": body}, f"message: {body!r}")

    hello = text("Hello from Matrix!")
    portal = text("This room is a portal to a MIMI room.")
    mls = text("What I say is MLS-encrypted and appended to the hub's log.")
    oops = text("This message will be deleted.")
    fixed = "Hello from Matrix, edited!"
    send("m.room.message", {"msgtype": "m.text", "body": f"* {fixed}",
                            "m.new_content": {"msgtype": "m.text", "body": fixed},
                            "m.relates_to": {"rel_type": "m.replace", "event_id": hello}},
         f"edit of the first message: {fixed!r}")
    send("m.room.message", {"msgtype": "m.text", "body": "A reply to the second message.",
                            "m.relates_to": {"m.in_reply_to": {"event_id": portal}}},
         "reply to the second message: 'A reply to the second message.'")
    send("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "event_id": mls, "key": "👍"}},
         "reaction 👍 to the third message")
    txn = f"demo-{os.getpid()}-redact"
    redaction = call("PUT", hs, f"/_matrix/client/v3/rooms/{q(room)}/redact/{q(oops)}/{txn}", token,
                     {})["event_id"]
    print(f"  {redaction}  redaction of the fourth message")


def wait_log(binary, data_dir, count, timeout):
    count, deadline = int(count), time.monotonic() + float(timeout)
    have, room = 0, None
    while time.monotonic() < deadline:
        listed = subprocess.run([binary, "log", "list", "--data-dir", data_dir, "--json"],
                                capture_output=True, text=True)
        if listed.returncode == 0 and listed.stdout.strip():
            rooms = json.loads(listed.stdout)
            rooms = rooms if isinstance(rooms, list) else rooms.get("rooms", [])
            for r in rooms:
                shown = subprocess.run([binary, "log", "show", "--data-dir", data_dir, "--room", r["room_id"],
                                        "--json", "--decrypt"], capture_output=True, text=True)
                if shown.returncode != 0:
                    continue
                lines = [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]
                n = sum(1 for e in lines if "decrypted" in e)
                if n >= count:
                    print(r["room_id"])
                    return
                have, room = max(have, n), r["room_id"]
        time.sleep(0.2)
    where = f"room {room} holds {have}" if room else "no room in the log yet"
    die(f"the MIMI log did not reach {count} decrypted messages within {timeout}s ({where})")


def summary(binary, data_dir, room):
    shown = subprocess.run([binary, "log", "show", "--data-dir", data_dir, "--room", room, "--json", "--decrypt"],
                           capture_output=True, text=True, check=True)
    by_id, rows = {}, []
    for line in shown.stdout.splitlines():
        e = json.loads(line)
        if "decrypted" not in e:
            continue
        d = e["decrypted"]
        cbor = subprocess.run([binary, "mimi", "encode"], input=json.dumps(d).encode(), capture_output=True,
                              check=True).stdout
        message_id = subprocess.run([binary, "mimi", "id"], input=cbor, capture_output=True,
                                    check=True).stdout.decode().strip()
        by_id[message_id] = e["position"]
        body = d.get("body") or {}
        if d.get("replaces") and body.get("cardinality") == "nullpart":
            kind, target = "deletion", d["replaces"]
        elif d.get("replaces"):
            kind, target = "edit", d["replaces"]
        elif d.get("inReplyTo") and body.get("disposition") == 2:
            kind, target = "reaction", d["inReplyTo"]
        elif d.get("inReplyTo"):
            kind, target = "reply", d["inReplyTo"]
        else:
            kind, target = "message", None
        rows.append((e["position"], message_id, kind, body.get("text"), target))
    verbs = {"edit": "replaces", "deletion": "deletes", "reply": "in reply to", "reaction": "reacts to"}
    for position, message_id, kind, text, target in rows:
        refers = f"  {verbs[kind]} #{by_id.get(target, '?')}" if target else ""
        shown_text = json.dumps(text, ensure_ascii=False) if text is not None else "(no body)"
        print(f"  #{position:<3} {kind:<9} {message_id[:12]}…  {shown_text}{refers}")
    got = [(kind, by_id.get(target) if target else None) for _, _, kind, _, target in rows]
    p = [r[0] for r in rows[:4]] + [None] * 4
    want = [("message", None)] * 4 + [("edit", p[0]), ("reply", p[1]), ("reaction", p[2]), ("deletion", p[3])]
    if got != want:
        die(f"the MIMI log does not hold what alice sent: {got} instead of {want}")
    print("each edit, reply, reaction and deletion points at the MIMI message ID of the message it concerns")


COMMANDS = {"wait-ready": (wait_ready, 3), "get": (get, None), "portal": (portal, 6), "talk": (talk, 2),
            "wait-log": (wait_log, 4),
            "summary": (summary, 3)}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, arity = COMMANDS[sys.argv[1]]
    args = sys.argv[2:]
    if arity is not None and len(args) != arity or arity is None and not args:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        fn(*args)
    except KeyboardInterrupt:
        sys.exit(130)
