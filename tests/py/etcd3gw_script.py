"""Python's etcd3gw client (over the JSON gateway) against one server: KV, txn, leases,
watch and lock. Prints one line per result, free of ids and times, so that the output on
cairn can be compared with the output on etcd.

Usage: etcd3gw_script.py HOST PORT
"""
import signal
import sys

import etcd3gw

# Bounded: a server that never answers fails the run instead of hanging it.
signal.alarm(120)
host, port = sys.argv[1], int(sys.argv[2])
c = etcd3gw.client(host=host, port=port, timeout=20)


def show(label, value):
    print(f"{label}: {value!r}", flush=True)


show("members", len(c.members()))
show("status has version", "version" in c.status())
show("put", c.put("k1", "v1"))
show("put", c.put("k2", b"v2"))
show("get", c.get("k1"))
show("get missing", c.get("nope"))
show("get_prefix", sorted((v, m["key"]) for v, m in c.get_prefix("k")))
show("get_all", sorted(v for v, _ in c.get_all()))
show("create existing", c.create("k1", "x"))
show("create new", c.create("k3", "v3"))
show("replace wrong", c.replace("k1", "nope", "x"))
show("replace right", c.replace("k1", "v1", "v1b"))
show("get", c.get("k1"))
txn = {
    "compare": [{
        "key": etcd3gw.utils._encode("k1"),
        "result": "EQUAL",
        "target": "VALUE",
        "value": etcd3gw.utils._encode("v1b"),
    }],
    "success": [{"request_put": {
        "key": etcd3gw.utils._encode("k4"),
        "value": etcd3gw.utils._encode("v4"),
    }}],
    "failure": [],
}
show("txn succeeded", c.transaction(txn).get("succeeded"))
show("get k4", c.get("k4"))
show("delete", c.delete("k2"))
show("delete missing", c.delete("k2"))
show("delete_prefix", c.delete_prefix("k"))

lease = c.lease(ttl=60)
show("lease ttl in range", 0 < lease.ttl() <= 60)
show("put with lease", c.put("leased", "x", lease=lease))
show("lease keys", lease.keys())
show("lease refresh", 0 < lease.refresh() <= 60)
show("lease revoke", lease.revoke())
show("leased key after revoke", c.get("leased"))

# A watch from the next revision: the events of the two puts that follow, whenever the
# watch's stream opens; then cancelled.
rev = int(c.status()["header"]["revision"])
events, cancel = c.watch("w", start_revision=rev + 1)
c.put("w", "1")
c.put("w", "2")
got = []
for e in events:
    # A PUT is the enum's default: the gateway leaves "type" out.
    got.append((e.get("type", "PUT"), e["kv"].get("value")))
    if len(got) == 2:
        break
cancel()
show("watch events", got)

# watch_once on a revision already written: the delete of "w".
rev = int(c.status()["header"]["revision"])
c.delete("w")
once = c.watch_once("w", timeout=20, start_revision=rev + 1)
show("watch_once", (once.get("type", "PUT"), once["kv"].get("value")))

lock = c.lock(ttl=60)
show("lock acquire", lock.acquire())
show("lock is_acquired", lock.is_acquired())
show("lock release", lock.release())
show("done", True)
