#!/usr/bin/env bash
# Makes sure the loopback databases the tests use are up (they are on this machine kind;
# a service that stopped is started the way the machine starts it).
set -uo pipefail

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "services: starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "services: starting MariaDB" >&2
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "services: PostgreSQL or MariaDB is not answering on 127.0.0.1" >&2
exit 1
