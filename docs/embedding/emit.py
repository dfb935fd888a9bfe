#!/usr/bin/env python3
"""Publish one event onto the local pilot daemon's bus: python3 emit.py EVENT [DATA_JSON]"""
import json, os, socket, struct, sys


def socket_path():
    # As pilotctl finds it: $PILOT_SOCKET, else config "socket", else <home>/pilot.sock.
    if os.environ.get("PILOT_SOCKET"):
        return os.environ["PILOT_SOCKET"]
    home = os.environ.get("PILOT_HOME") or os.path.expanduser("~/.pilot")
    try:
        with open(os.path.join(home, "config.json")) as f:
            configured = json.load(f).get("socket")
    except FileNotFoundError:
        configured = None
    return configured or os.path.join(home, "pilot.sock")


def send(sock, message):
    body = json.dumps(message).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)  # 4-byte big-endian length, then JSON


def recv(sock):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the daemon closed the connection")
            buf += chunk
        return buf

    (length,) = struct.unpack(">I", exactly(4))
    return json.loads(exactly(length))


def call(sock, message):
    send(sock, message)
    reply = recv(sock)  # {"type":"hello",...}, {"type":"ok","data":{...}} or an error
    if reply["type"] == "error":
        raise RuntimeError(f'{reply["code"]}: {reply["message"]}')
    return reply


event = sys.argv[1]
data = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None

with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
    sock.connect(socket_path())
    call(sock, {"type": "hello", "version": 1, "client": "emit.py/1.0"})
    request = {"type": "emit", "event": event}
    if data is not None:
        request["data"] = data
    reply = call(sock, request)
    print(f'#{reply["data"]["event_id"]} {event}')
