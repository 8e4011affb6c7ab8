#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
# One database per service, with two logins of that service's own and no right in any
# other database, so no service reads another's tables:
# - `<service>` owns the database and its tables; only the migration step logs in with it;
# - `<service>_runtime` is what the service runs as: it owns nothing, so it cannot alter,
#   drop or truncate a table, nor disable a trigger; each migration grants it its rows'
#   privileges (common/migrations.py), on the data service's audit events only INSERT and
#   SELECT.
set -eu

for service in auth inference data slides; do
  upper="$(echo "$service" | tr '[:lower:]' '[:upper:]')"
  password="$(printenv "${upper}_DB_PASSWORD")"
  runtime_password="$(printenv "${upper}_RUNTIME_DB_PASSWORD")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v service="$service" -v runtime="${service}_runtime" \
    -v password="$password" -v runtime_password="$runtime_password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE ROLE :"runtime" LOGIN PASSWORD :'runtime_password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"service" TO :"service";
GRANT CONNECT ON DATABASE :"service" TO :"runtime";
SQL
done
