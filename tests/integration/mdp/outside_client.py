"""An MDP client as someone outside this repository would write it: hashlib, hmac, json,
socket and nothing else (DESIGN §13 is all it knows).

``python outside_client.py HOST PORT KNOWN_MACHINES_DIR`` reads the key from
``KNOWN_MACHINES_DIR/<HOST>.txt``, runs a good request and then, for each attack (wrong key,
replay, stale, malformed, oversized), sends the bad datagram followed by a good probe: the
endpoint handles datagrams in order, so if the probe's reply is the first thing back, the bad
one got none. Prints one JSON object with the findings.
"""

import hashlib
import hmac
import json
import os
import socket
import sys
import time


def canonical(obj):
    body = {k: v for k, v in obj.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def signed(key, operations, ts=None, nonce=None):
    obj = {
        "version": "2",
        "ts": int(time.time()) if ts is None else ts,
        "nonce": nonce or os.urandom(16).hex(),
        "operations": operations,
    }
    obj["mac"] = hmac.new(key, canonical(obj), hashlib.sha256).hexdigest()
    return obj


def replies(sock, until_nonce):
    """Datagrams received until the reply to ``until_nonce`` (inclusive)."""
    got = []
    while True:
        data, _ = sock.recvfrom(65536)
        obj = json.loads(data)
        got.append(obj)
        if obj.get("reply_to") == until_nonce:
            return got


def authentic(key, obj):
    mac = hmac.new(key, canonical(obj), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, obj.get("mac", ""))


def main():
    host, port, known = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(os.path.join(known, host + ".txt")) as handle:
        key = bytes.fromhex(handle.read().strip())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(10)
    sock.connect((host, port))
    out = {}

    good = signed(key, [{"name": "load_and_memory"}, {"name": "get_available_methods"}])
    good_bytes = json.dumps(good).encode()
    sock.send(good_bytes)
    [reply] = replies(sock, good["nonce"])
    out["good_status"] = reply["status"]
    out["good_authentic"] = authentic(key, reply)
    out["good_ops"] = [op["name"] for op in reply["operations"]]
    out["methods"] = sorted(reply["operations"][1]["result"])
    out["reply_has_key"] = key.hex() in json.dumps(reply)

    def silent(bad):
        sock.send(bad)
        probe = signed(key, [{"name": "endpoint_stats"}])
        sock.send(json.dumps(probe).encode())
        got = replies(sock, probe["nonce"])
        return len(got) == 1, got[-1]["operations"][0]["result"]

    wrong = signed(os.urandom(32), [{"name": "load_and_memory"}])
    out["wrong_key_silent"], _ = silent(json.dumps(wrong).encode())
    out["replay_silent"], _ = silent(good_bytes)
    stale = signed(key, [{"name": "load_and_memory"}], ts=int(time.time()) - 120)
    out["stale_silent"], _ = silent(json.dumps(stale).encode())
    out["malformed_silent"], _ = silent(b"{this is not json")
    big = signed(key, [{"name": "log_tail", "args": {"path": "x" * 9000}}])
    out["oversized_silent"], stats = silent(json.dumps(big).encode())
    legacy = {"key": key.hex(), "version": "1.0", "operations": [{"name": "load_and_memory"}]}
    out["legacy_silent"], stats = silent(json.dumps(legacy).encode())
    out["counters"] = stats
    print(json.dumps(out))


main()
