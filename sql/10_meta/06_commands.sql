-- Custom Splitfile commands: a command NAME args... runs these functions as the role that builds.
create table splitgraph_meta.commands (
    name text primary key,
    calc_hash regprocedure,
    execute regprocedure not null,
    constraint command_name_valid check (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' and name not in ('FROM', 'SQL'))
);
comment on table splitgraph_meta.commands is 'Custom Splitfile commands, by name (register_command)';
comment on column splitgraph_meta.commands.name is 'The command as a Splitfile writes it';
comment on column splitgraph_meta.commands.calc_hash is
'Function (repository text, args text[]) returns text: what the step''s image hash is derived from; null: never cached';
comment on column splitgraph_meta.commands.execute is
'Function (repository text, args text[]) returns text: does the work on the checkout; may return an image hash';
