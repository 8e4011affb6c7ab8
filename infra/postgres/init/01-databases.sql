-- Runs once, when the PostgreSQL volume is first initialised (docker-entrypoint-initdb.d).
-- One database per service; no service reads another's tables. The services' migrations
-- create their database too when it is missing, so this only makes the layout explicit.
CREATE DATABASE auth;
CREATE DATABASE inference;
CREATE DATABASE data;
