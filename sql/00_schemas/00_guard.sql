-- complain if the script is sourced in psql rather than run by CREATE EXTENSION
\echo Use "CREATE EXTENSION splitgraph CASCADE" to load this file. \quit
