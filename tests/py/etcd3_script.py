"""Drives a server with Python's etcd3 client (PyPI `etcd3`, gRPC) through one fixed script
and prints what each step saw, one line a step, so two servers' runs can be compared.

Usage: etcd3_script.py HOST PORT [--ca-cert F] [--cert-cert F --cert-key F]
                       [--user U --password P]
"""

import argparse
import threading

import etcd3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--ca-cert")
    p.add_argument("--cert-cert")
    p.add_argument("--cert-key")
    p.add_argument("--user")
    p.add_argument("--password")
    a = p.parse_args()
    c = etcd3.client(host=a.host, port=a.port, ca_cert=a.ca_cert, cert_cert=a.cert_cert,
                     cert_key=a.cert_key, user=a.user, password=a.password, timeout=5)

    def kv(meta):
        return f"rev={meta.mod_revision} create={meta.create_revision} ver={meta.version}"

    c.put("svc/a", "1")
    c.put("svc/b", "2")
    value, meta = c.get("svc/a")
    print("get", value, kv(meta))
    print("prefix", [(v, m.key) for v, m in c.get_prefix("svc/")])
    print("missing", c.get("svc/none"))

    ok, responses = c.transaction(
        compare=[c.transactions.value("svc/a") == "1"],
        success=[c.transactions.put("svc/a", "3"), c.transactions.get("svc/b")],
        failure=[c.transactions.delete("svc/a")],
    )
    print("txn", ok, [[(v, m.key) for v, m in r] for r in responses[1:]])
    ok, _ = c.transaction(compare=[c.transactions.version("svc/a") == 9],
                          success=[], failure=[c.transactions.put("svc/c", "x")])
    print("txn-else", ok, c.get("svc/c")[0])

    lease = c.lease(30)
    c.put("svc/leased", "v", lease=lease)
    print("lease", 0 < lease.remaining_ttl <= 30, c.get("svc/leased")[1].lease_id == lease.id)
    lease.revoke()
    print("revoked", c.get("svc/leased"))

    seen = []
    done = threading.Event()

    def on_event(response):
        for e in response.events:
            seen.append((type(e).__name__, e.key, e.value))
        if len(seen) >= 2:
            done.set()

    watch_id = c.add_watch_callback("svc/w", on_event)
    c.put("svc/w", "w1")
    c.delete("svc/w")
    done.wait(10)
    c.cancel_watch(watch_id)
    print("watch", seen)

    with c.lock("jobs", ttl=10) as lock:
        print("lock", lock.is_acquired())

    print("deleted", c.delete_prefix("svc/").deleted)
    print("status", c.status().version.split(".")[0], len(list(c.members)))


if __name__ == "__main__":
    main()
