# Shared by the bench scripts (sourced, not run): a free loopback port, and waiting for a
# server to answer.

# A loopback port nothing listens on right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 10 s for URL to answer 2xx; stops the script if it never does, since every
# figure after that would be measuring nothing.
wait_http() { # wait_http URL
  for _ in $(seq 200); do curl -fs -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "bench: $1 did not come up" >&2
  exit 1
}
