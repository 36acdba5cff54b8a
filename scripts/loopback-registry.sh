# Sourced by scripts: start_registry DIR starts a throwaway registry
# (docker-registry, CNCF distribution) on a free loopback port, storing
# under DIR, and sets registry_port and registry_pid; stop_registry stops
# it. The caller stops it on exit.

start_registry() {
  local dir=$1 bin
  bin=$(command -v docker-registry) || {
    echo "error: docker-registry is not installed (apt-get install docker-registry)" >&2
    return 1
  }
  registry_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  cat >"$dir/registry.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $dir/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$registry_port}
YAML
  "$bin" serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    if curl -fs "http://127.0.0.1:$registry_port/v2/" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "error: the registry did not start; its log:" >&2
  cat "$dir/registry.log" >&2
  return 1
}

stop_registry() {
  if [ -n "${registry_pid:-}" ]; then
    kill "$registry_pid" 2>/dev/null || true
    wait "$registry_pid" 2>/dev/null || true
    registry_pid=""
  fi
}
