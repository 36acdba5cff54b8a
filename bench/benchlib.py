"""What every benchmark shares: a throwaway registry on a loopback port, and
timing of shell commands with their peak RSS."""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def registry_config(work, name, host):
    """Writes the config of a docker-registry listening on `host` with its
    storage in `work/name`; returns the config's path."""
    config = os.path.join(work, f"{name}.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
            f"storage: {{filesystem: {{rootdirectory: {os.path.join(work, name)}}}, delete: {{enabled: true}}}}\n"
            f"http: {{addr: {host}}}\n"
        )
    return config


class Registry:
    """A docker-registry on a free loopback port with its storage in a temp dir."""

    def __init__(self, work):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = registry_config(work, "registry", self.host)
        binary = shutil.which("docker-registry")
        if not binary:
            sys.exit("docker-registry is missing: apt-get install -y docker-registry")
        self.proc = subprocess.Popen([binary, "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        sys.exit("docker-registry did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def timed(cmd, setup=None):
    """Runs a shell command; returns (seconds, peak RSS in MiB of the command's processes)."""
    if setup:
        setup()
    start = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", "set -o pipefail; " + cmd], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"benchmark command failed ({status}): {cmd}")
    return elapsed, usage.ru_maxrss / 1024


def summary(name, samples):
    """The row for `name` from its (seconds, peak RSS) samples."""
    times = [s[0] for s in samples]
    rss = max(s[1] for s in samples)
    print(f"  {name}: median {statistics.median(times):.2f}s over {len(samples)} runs, peak RSS {rss:.0f} MiB", file=sys.stderr)
    return {"name": name, "median": statistics.median(times), "min": min(times), "max": max(times), "rss": rss}


def measure(name, cmd, runs, setup=None):
    return summary(name, [timed(cmd(i) if callable(cmd) else cmd, setup) for i in range(runs)])


def measure_interleaved(commands, runs, setup=None):
    """Runs each of `commands` (name, cmd) once per round, `runs` rounds, so
    every command meets the same conditions (page cache, write-back of the
    previous runs); returns their rows in the same order."""
    samples = {name: [] for name, _ in commands}
    for i in range(runs):
        for name, cmd in commands:
            samples[name].append(timed(cmd(i), setup))
    return [summary(name, samples[name]) for name, _ in commands]
