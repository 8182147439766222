"""PySafeguard (unmodified, from PyPI) side of scripts/bench.

Two modes:
  bench.py serve CONNECTION_JSON   reads one JSON command per line on stdin,
                                   answers one JSON line on stdout
  bench.py download CONNECTION_JSON BACKUP_ID
                                   downloads a backup to /dev/null in this fresh
                                   process and prints bytes, seconds, peak RSS

Every time is measured here with time.perf_counter(), and the CPU time of
this process with time.process_time(); the Rust harness takes medians and
ratios.
"""

import asyncio
import json
import sys
import threading
import time

from pysafeguard import A2AContext, PkceAuth, SafeguardClient, Service
from pysafeguard.async_client import AsyncSafeguardClient


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    rank = max(1, min(len(v), int(-(-len(v) * p // 1))))
    return v[rank - 1]


def summary(latencies, seconds, count, cpu_seconds):
    return {
        "per_sec": count / seconds,
        "p50_us": pct(latencies, 0.50) * 1e6,
        "p99_us": pct(latencies, 0.99) * 1e6,
        "count": count,
        "cpu_us": cpu_seconds / count * 1e6,
    }


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


class Bench:
    def __init__(self, conn):
        spp = conn["spp"]
        self.host, self.ca = spp["host"], spp["ca"]
        self.user, self.password = spp["admin"]["user"], spp["admin"]["password"]
        self.cert = spp["client_cert"]
        self.a2a_key = spp["a2a"]["password_api_key"]
        self.client = self.new_client()
        self.client.login()
        self.loop = asyncio.new_event_loop()
        self.aclient = AsyncSafeguardClient(
            self.host, auth=PkceAuth("local", self.user, self.password), verify=self.ca)
        self.loop.run_until_complete(self.aclient.login())
        self.a2a = A2AContext(self.host, self.cert["cert"], self.cert["key"], verify=self.ca)
        self.listener = None
        self.event_latencies = []

    def new_client(self):
        return SafeguardClient(self.host, auth=PkceAuth("local", self.user, self.password), verify=self.ca)

    def sequential(self, n, call):
        lat = []
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(n):
            t = time.perf_counter()
            call()
            lat.append(time.perf_counter() - t)
        return summary(lat, time.perf_counter() - start, n, time.process_time() - cpu)

    def me_seq(self, cmd):
        def call():
            r = self.client.get(Service.CORE, "Me")
            r.raise_for_status()
            r.json()
        return self.sequential(cmd["n"], call)

    def me_conc(self, cmd):
        tasks, per_task = cmd["tasks"], cmd["per_task"]
        lat = []

        async def worker():
            for _ in range(per_task):
                t = time.perf_counter()
                r = await self.aclient.get(Service.CORE, "Me")
                await r.json()
                lat.append(time.perf_counter() - t)

        async def run():
            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            return time.perf_counter() - start

        cpu = time.process_time()
        seconds = self.loop.run_until_complete(run())
        return summary(lat, seconds, tasks * per_task, time.process_time() - cpu)

    def users(self, cmd):
        count = []

        def call():
            r = self.client.get(Service.CORE, "Users", params={"limit": str(cmd["limit"])})
            r.raise_for_status()
            count.append(len(r.json()))
        out = self.sequential(cmd["n"], call)
        out["items"] = count[-1]
        return out

    def a2a_reuse(self, cmd):
        return self.sequential(cmd["n"], lambda: self.a2a.retrieve_password(self.a2a_key).get_value())

    def a2a_new(self, cmd):
        def call():
            with A2AContext(self.host, self.cert["cert"], self.cert["key"], verify=self.ca) as ctx:
                ctx.retrieve_password(self.a2a_key).get_value()
        return self.sequential(cmd["n"], call)

    def login(self, cmd):
        def call():
            c = self.new_client()
            c.login()
            c.close()
        return self.sequential(cmd["n"], call)

    def events_start(self, cmd):
        self.event_latencies = []
        lock = threading.Lock()

        def handler(event_name, body):
            now = time.time_ns()
            data = json.loads(body) if isinstance(body, str) else body
            sent = data.get("SentNanos") if isinstance(data, dict) else None
            if sent is None and isinstance(data, dict) and isinstance(data.get("Data"), dict):
                sent = data["Data"].get("SentNanos")
            if sent is not None:
                with lock:
                    self.event_latencies.append((now - sent) / 1e9)

        self.listener = self.client.get_event_listener()
        self.listener.on(cmd["name"], handler)
        self.listener.start()
        return {"started": True}

    def events_reset(self, cmd):
        self.event_latencies = []
        return {"reset": True}

    def events_stop(self, cmd):
        deadline = time.time() + 10
        while len(self.event_latencies) < cmd["expect"] and time.time() < deadline:
            time.sleep(0.01)
        lat = list(self.event_latencies)
        if cmd.get("stop", True):
            # signalrcore's stop() blocks for ~15 s on its reconnect thread;
            # the harness does not wait on it.
            threading.Thread(target=self.listener.stop, daemon=True).start()
            self.listener = None
        return {"count": len(lat), "p50_us": pct(lat, 0.5) * 1e6, "p99_us": pct(lat, 0.99) * 1e6}


def serve(conn_path):
    bench = Bench(json.load(open(conn_path)))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            bench.loop.run_until_complete(bench.aclient.close())
            break
        try:
            out = getattr(bench, cmd["op"])(cmd)
        except Exception as e:  # noqa: BLE001 - reported to the harness
            out = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


def download(conn_path, backup_id):
    conn = json.load(open(conn_path))
    spp = conn["spp"]
    with SafeguardClient(spp["host"], auth=PkceAuth("local", spp["admin"]["user"], spp["admin"]["password"]),
                         verify=spp["ca"]) as c:
        start = time.perf_counter()
        n = c.download(Service.APPLIANCE, f"Backups/{backup_id}/Download", "/dev/null")
        seconds = time.perf_counter() - start
    print(json.dumps({"bytes": n, "seconds": seconds, "peak_rss_kib": peak_rss_kib()}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    elif sys.argv[1] == "download":
        download(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
