#!/usr/bin/env python3
"""The Matrix users' side of scripts/demo, and its small chores, with nothing but the standard library.

  demo-client.py free-ports N                    print N free 127.0.0.1 ports
  demo-client.py edit-config FILE OLD NEW [OLD NEW ...]
        replace each OLD by NEW in FILE; each OLD must occur exactly once
  demo-client.py wait-ready URL PID TIMEOUT      poll URL until 200 (fails if PID exits first)
  demo-client.py get URL [PREFIX...]             print the body (only lines starting with a PREFIX)
  demo-client.py open HS USER PASSWORD INVITEE NAME SESSION TIMEOUT
        log in, create an unencrypted private room NAME, invite INVITEE and wait until it joined;
        the access token and room ID go to the JSON file SESSION
  demo-client.py accept HS USER PASSWORD SESSION TIMEOUT
        log in, wait for an invite to a room, join it; the token and room ID go to SESSION
  demo-client.py send SESSION TEXT...            send each TEXT as a message
  demo-client.py reply SESSION SENDER TARGET TEXT
        send TEXT in reply to SENDER's message whose text is TARGET
  demo-client.py react SESSION SENDER TARGET KEY react with KEY to SENDER's message TARGET
  demo-client.py expect SESSION SENDER TIMEOUT TEXT...
        wait until SENDER's messages in the room are the TEXTs, in order; print them, with what
        each one answers
  demo-client.py check-reply SESSION TEXT TARGET fail unless the message TEXT answers the message TARGET
  demo-client.py expect-reaction SESSION SENDER KEY TARGET TIMEOUT
        wait until SENDER reacted with KEY to the message TARGET
  demo-client.py common-room BIN DATA_DIR...     print the MIMI room every data directory's log holds
  demo-client.py summary BIN ROOM DATA_DIR...
        one line per decrypted MIMI message of each log: its sender, kind, text, and the position
        of the message it answers or reacts to (message IDs recomputed with `BIN mimi encode` and
        `BIN mimi id`); fails unless every log holds the same messages in the same order

Every wait is bounded and fails with a message saying what it waited for.
"""

import json
import os
import socket
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


def call(method, hs, path, token=None, body=None, timeout=10):
    status, raw = request(method, hs + path, token, body, timeout)
    if status != 200:
        die(f"{method} {path} answered {status}: {raw.decode(errors='replace')[:300]}")
    return json.loads(raw or b"{}")


def q(segment):
    return urllib.parse.quote(segment, safe="")


def free_ports(n):
    socks = [socket.socket() for _ in range(int(n))]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    print(*(s.getsockname()[1] for s in socks))
    for s in socks:
        s.close()


def edit_config(path, *pairs):
    if len(pairs) % 2:
        die("edit-config takes OLD NEW pairs")
    with open(path) as f:
        text = f.read()
    for old, new in zip(pairs[::2], pairs[1::2]):
        if text.count(old) != 1:
            die(f"expected {old!r} once in {path}, found it {text.count(old)} times")
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


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


def login(hs, user, password):
    answer = call("POST", hs, "/_matrix/client/v3/login", body={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password})
    print(f"logged in as {answer['user_id']}")
    return answer["access_token"], answer["user_id"]


def save(session, hs, token, room, user_id):
    with open(session, "w") as f:
        json.dump({"hs": hs, "token": token, "room": room, "user_id": user_id}, f)


def load(session):
    with open(session) as f:
        return json.load(f)


def open_room(hs, user, password, invitee, name, session, timeout):
    token, user_id = login(hs, user, password)
    room = call("POST", hs, "/_matrix/client/v3/createRoom", token, {"preset": "private_chat", "name": name})["room_id"]
    print(f"created the unencrypted room {room} {name!r}")
    call("POST", hs, f"/_matrix/client/v3/rooms/{q(room)}/invite", token, {"user_id": invitee})
    print(f"invited {invitee}; waiting for it to join", end="", flush=True)
    started = time.monotonic()
    while True:
        members = call("GET", hs, f"/_matrix/client/v3/rooms/{q(room)}/joined_members", token)["joined"]
        if invitee in members:
            break
        if time.monotonic() - started > float(timeout):
            print()
            die(f"{invitee} did not join {room} within {timeout}s (see the bridge's log)")
        time.sleep(0.1)
    print(f" ... joined after {time.monotonic() - started:.1f}s")
    save(session, hs, token, room, user_id)


def accept(hs, user, password, session, timeout):
    token, user_id = login(hs, user, password)
    print("waiting for an invite", end="", flush=True)
    started, since = time.monotonic(), None
    while True:
        left = float(timeout) - (time.monotonic() - started)
        if left <= 0:
            print()
            die(f"no invite for {user_id} within {timeout}s (see the bridges' logs)")
        path = f"/_matrix/client/v3/sync?timeout={int(min(left, 5) * 1000)}"
        synced = call("GET", hs, path + (f"&since={q(since)}" if since else ""), token, timeout=15)
        since = synced.get("next_batch")
        invites = synced.get("rooms", {}).get("invite", {})
        if invites:
            break
    room, invite = next(iter(invites.items()))
    events = invite.get("invite_state", {}).get("events", [])
    inviter = next((e["sender"] for e in events if e.get("type") == "m.room.member"
                    and e.get("state_key") == user_id), "?")
    name = next((e["content"].get("name") for e in events if e.get("type") == "m.room.name"), None)
    print(f" ... after {time.monotonic() - started:.1f}s: {inviter} invites {user_id} to {room}"
          + (f" {name!r}" if name else ""))
    call("POST", hs, f"/_matrix/client/v3/join/{q(room)}", token, {})
    print(f"joined {room}")
    save(session, hs, token, room, user_id)


def events(s):
    """The room's events as the user sees them, oldest first."""
    path = f"/_matrix/client/v3/rooms/{q(s['room'])}/messages?dir=b&limit=1000"
    return list(reversed(call("GET", s["hs"], path, s["token"])["chunk"]))


def text_of(event):
    """The text of a message, without a reply fallback (`> ` lines and the blank line after them)."""
    lines = event.get("content", {}).get("body", "").split("\n")
    if lines and lines[0].startswith("> "):
        while lines and lines[0].startswith(">"):
            lines.pop(0)
        if lines and not lines[0]:
            lines.pop(0)
    return "\n".join(lines)


def messages(s, sender=None):
    """The messages (edits left out) in the room, of `sender` if given."""
    return [e for e in events(s) if e["type"] == "m.room.message"
            and (sender is None or e["sender"] == sender)
            and e["content"].get("m.relates_to", {}).get("rel_type") != "m.replace"]


def find(s, sender, target):
    found = [e for e in messages(s, sender) if text_of(e) == target]
    if not found:
        die(f"no message {target!r} from {sender} in {s['room']}")
    return found[-1]


def send_event(s, event_type, content, what):
    path = f"/_matrix/client/v3/rooms/{q(s['room'])}/send/{event_type}/demo-{os.getpid()}-{time.time_ns()}"
    event_id = call("PUT", s["hs"], path, s["token"], content)["event_id"]
    print(f"  {event_id}  {what}")


def send(session, *texts):
    s = load(session)
    for text in texts:
        send_event(s, "m.room.message", {"msgtype": "m.text", "body": text}, f"{text!r}")


def reply(session, sender, target, text):
    s = load(session)
    original = find(s, sender, target)
    content = {"msgtype": "m.text", "body": text,
               "m.relates_to": {"m.in_reply_to": {"event_id": original["event_id"]}}}
    send_event(s, "m.room.message", content, f"{text!r}, in reply to {original['event_id']} {target!r}")


def react(session, sender, target, key):
    s = load(session)
    original = find(s, sender, target)
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": original["event_id"], "key": key}}
    send_event(s, "m.reaction", content, f"reaction {key} to {original['event_id']} {target!r}")


def answers(s, event):
    """What a message answers: (event ID, sender, text) of the message it replies to, or None."""
    target = event["content"].get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
    if not target:
        return None
    original = next((e for e in events(s) if e["event_id"] == target), None)
    return target, original and original["sender"], original and text_of(original)


def expect(session, sender, timeout, *texts):
    s, started = load(session), time.monotonic()
    while True:
        got = messages(s, sender)
        if [text_of(e) for e in got] == list(texts):
            break
        if len(got) > len(texts) or [text_of(e) for e in got] != list(texts[:len(got)]):
            die(f"{sender}'s messages in {s['room']} are {[text_of(e) for e in got]}, expected {list(texts)}")
        if time.monotonic() - started > float(timeout):
            die(f"waited {timeout}s for {len(texts)} messages from {sender} in {s['room']}; "
                f"{len(got)} arrived: {[text_of(e) for e in got]}")
        time.sleep(0.1)
    print(f"after {time.monotonic() - started:.1f}s, in {s['room']} from {sender}:")
    for e in got:
        answered = answers(s, e)
        suffix = f"\n      in reply to {answered[0]} from {answered[1]}: {answered[2]!r}" if answered else ""
        print(f"  {e['event_id']}  {text_of(e)!r}{suffix}")


def check_reply(session, text, target):
    s = load(session)
    message = next((e for e in messages(s) if text_of(e) == text), None)
    if message is None:
        die(f"no message {text!r} in {s['room']}")
    answered = answers(s, message)
    if not answered or answered[2] != target:
        die(f"{text!r} does not answer {target!r} in {s['room']}: it answers {answered}")
    print(f"{text!r} answers {answered[0]}, the message {target!r} of {answered[1]}")


def expect_reaction(session, sender, key, target, timeout):
    s, started = load(session), time.monotonic()
    while True:
        by_id = {e["event_id"]: e for e in events(s)}
        for e in by_id.values():
            relates = e.get("content", {}).get("m.relates_to", {})
            original = by_id.get(relates.get("event_id"))
            if e["type"] == "m.reaction" and e["sender"] == sender and relates.get("key") == key \
                    and original is not None and text_of(original) == target:
                print(f"after {time.monotonic() - started:.1f}s: {e['event_id']} from {sender}: {key} on "
                      f"{original['event_id']} {target!r} of {original['sender']}")
                return
        if time.monotonic() - started > float(timeout):
            die(f"no {key} from {sender} on {target!r} in {s['room']} within {timeout}s")
        time.sleep(0.1)


def log_json(binary, *args):
    out = subprocess.run([binary, "log", *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        die(f"{binary} log {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def common_room(binary, *data_dirs):
    rooms = [{r["room_id"] for r in json.loads(log_json(binary, "list", "--data-dir", d))} for d in data_dirs]
    common = sorted(set.intersection(*rooms))
    if len(common) != 1:
        die(f"expected one room in every log, found {common}")
    print(common[0])


def sender_of(d):
    """The sender's user URI, extension 1 of the MIMI content."""
    for extension in d.get("extensions", []):
        if extension.get("key") == 1:
            value = extension.get("value")
            return value if isinstance(value, str) else (value or {}).get("text", "?")
    return "?"


def decrypted_messages(binary, data_dir, room):
    rows = []
    for line in log_json(binary, "show", "--data-dir", data_dir, "--room", room, "--decrypt").splitlines():
        e = json.loads(line)
        d = e.get("decrypted")
        if d is None:
            continue
        cbor = subprocess.run([binary, "mimi", "encode"], input=json.dumps(d).encode(), capture_output=True,
                              check=True).stdout
        message_id = subprocess.run([binary, "mimi", "id"], input=cbor, capture_output=True,
                                    check=True).stdout.decode().strip()
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
        rows.append((e["position"], e["pdu"]["type"], message_id, sender_of(d), kind, body.get("text"), target))
    return rows


def summary(binary, room, *data_dirs):
    verbs = {"edit": "replaces", "deletion": "deletes", "reply": "in reply to", "reaction": "reacts to"}
    seen = []
    for data_dir in data_dirs:
        rows = decrypted_messages(binary, data_dir, room)
        by_id = {message_id: position for position, _, message_id, *_ in rows}
        kinds = sorted({event_type for _, event_type, *_ in rows})
        print(f"{data_dir}: {len(rows)} decrypted MIMI messages ({', '.join(kinds)})")
        for position, _, message_id, sender, kind, text, target in rows:
            refers = f"  {verbs[kind]} #{by_id.get(target, '?')}" if target else ""
            shown = json.dumps(text, ensure_ascii=False) if text is not None else "(no body)"
            print(f"  #{position:<3} {message_id[:12]}…  {sender:<28} {kind:<8} {shown}{refers}")
        seen.append([(message_id, sender, kind, text, target) for _, _, message_id, sender, kind, text, target in rows])
    if not seen[0] or any(other != seen[0] for other in seen[1:]):
        die("the logs do not hold the same decrypted MIMI messages in the same order")
    where = "both logs" if len(data_dirs) == 2 else f"all {len(data_dirs)} logs"
    print(f"the same {len(seen[0])} MIMI messages, in the same order, in {where}; each reply and reaction "
          "points at the MIMI message ID of the message it concerns")


COMMANDS = {
    "free-ports": (free_ports, 1), "edit-config": (edit_config, None), "wait-ready": (wait_ready, 3),
    "get": (get, None), "open": (open_room, 7), "accept": (accept, 5), "send": (send, None),
    "reply": (reply, 4), "react": (react, 4), "expect": (expect, None), "check-reply": (check_reply, 3),
    "expect-reaction": (expect_reaction, 5), "common-room": (common_room, None), "summary": (summary, None),
}

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
