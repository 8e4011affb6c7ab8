#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# One database per service, owned by that service's own login; no login can connect to
# another service's database, so no service reads another's tables.
set -eu

for service in auth inference data; do
  password_variable="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
  password="$(printenv "$password_variable")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v service="$service" -v password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"service" TO :"service";
SQL
done
