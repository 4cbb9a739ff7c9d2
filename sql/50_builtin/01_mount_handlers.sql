-- The mount handlers the extension comes with (pg_dump leaves them out: the extension script makes them).
insert into splitgraph_meta.mount_handlers (name, handler, description, builtin) values
(
    'postgres_fdw', 'splitgraph_internal.mount_postgres_fdw(text, jsonb, jsonb)',
    'A remote PostgreSQL schema (options: host, port, username, password, dbname, remote_schema)', true
),
(
    'mysql_fdw', 'splitgraph_internal.mount_mysql_fdw(text, jsonb, jsonb)',
    'A MySQL or MariaDB database (options: host, port, username, password, dbname)', true
),
(
    'csv', 'splitgraph_internal.mount_csv(text, jsonb, jsonb)',
    'A CSV file on the database server (options: filename, table, header, delimiter, quote, encoding, null); '
    || 'column types are inferred unless tables gives them', true
);
