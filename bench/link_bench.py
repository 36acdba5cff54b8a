"""Push and pull through a 100 Mbit/s link: a registry and ocistep in a
network namespace the bench makes for itself, whose loopback is shaped with
`tc qdisc ... tbf rate 100mbit` (this kernel has tbf, not netem). The ratio
is against the time the layer's own bytes take at that rate. The namespace
(and with it the qdisc) is removed afterwards. It needs root; without it
the bench says so and leaves out only these rows.
"""
import os
import subprocess
import sys

from benchlib import free_port, measure, registry_config

RATE_MBIT = 100


class ShapedNamespace:
    """A network namespace with its loopback up and shaped to RATE_MBIT."""

    def __init__(self):
        self.name = f"ocistep-bench-{os.getpid()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.run(["ip", "link", "set", "lo", "up"])
            self.run(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", f"{RATE_MBIT}mbit",
                      "burst", "256kb", "latency", "100ms"])
        except Exception:
            self.remove()
            raise

    def run(self, cmd, **kw):
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=True, **kw)

    def prefix(self):
        return f"ip netns exec {self.name} "

    def remove(self):
        subprocess.run(["ip", "netns", "del", self.name], check=False)


def start_registry(ns, work):
    """A docker-registry inside the namespace; returns (process, host)."""
    host = f"127.0.0.1:{free_port()}"
    config = registry_config(work, "link-registry", host)
    proc = subprocess.Popen(["ip", "netns", "exec", ns.name, "docker-registry", "serve", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = f"for i in $(seq 100); do curl -fs http://{host}/v2/ >/dev/null && exit 0; sleep 0.1; done; exit 1"
    ns.run(["bash", "-c", probe])
    return proc, host


def link_rows(ocistep, src, work, runs):
    """Rows for a push and a pull of `src` through the shaped link, each
    against the time its layer's bytes take at RATE_MBIT."""
    if os.geteuid() != 0:
        print("not root: no rows through a 100 Mbit/s link (they need a network namespace and tc)", file=sys.stderr)
        return []
    ns = ShapedNamespace()
    registry = None
    try:
        registry, host = start_registry(ns, work)
        in_ns = ns.prefix()
        size_file = os.path.join(work, "link-size")
        ns.run(["bash", "-c", f"{ocistep} -q --push-source-bundle {src} --image {host}/link/seed:v1 "
                              f"--result-file-image-size {size_file}"])
        with open(size_file) as f:
            total = int(f.read().strip())
        at_rate = {"name": f"the image's {total / 1e6:.1f} MB at {RATE_MBIT} Mbit/s",
                   "median": total * 8 / (RATE_MBIT * 1e6)}
        at_rate.update({"min": at_rate["median"], "max": at_rate["median"], "rss": 0})
        push = measure(f"ocistep push, {RATE_MBIT} Mbit/s link",
                       lambda i: f"{in_ns}{ocistep} -q --push-source-bundle {src} --image {host}/link/push{i}:v1",
                       runs)
        target = os.path.join(work, "link-target")
        pull = measure(f"ocistep pull, {RATE_MBIT} Mbit/s link",
                       lambda i: f"rm -rf {target} && {in_ns}{ocistep} -q --pull-source-bundle {target} "
                                 f"--image {host}/link/seed:v1",
                       runs)
    finally:
        if registry:
            registry.terminate()
            registry.wait()
        ns.remove()
    return [("link", at_rate, None), ("link", push, at_rate), ("link", pull, at_rate)]
