// The SQL migrate() (and the script of migrationSql()) runs around the
// migrations: the checks of schema jobs' owner and of another tool's schema
// jobs, the record of the migrations applied (jobs.migration), and the
// roles' grants again after an upgrade.

// checksum: the SHA-256 of the migration's text (null in databases migrated
// before pgdrain recorded it; the next migrate() fills it in). The column is
// added only where it is missing: an ALTER on every run would take the
// table's strongest lock and need its owner each time.
// A schema jobs made beforehand by another role (one that may create
// schemas in the database) would stay that role's: as its owner it may drop
// and replace every function made in it, which the application, often a
// superuser, then calls as itself. So the schema must be this role's (a
// member of its owner) or a superuser's (one made by the database's admin).
// The schema is created only where it is missing: create schema if not
// exists needs CREATE on the database even when the schema is there, which
// its owner may lack (an admin made it with create schema jobs authorization
// <role>, or took the database's CREATE back after the install). A role
// that may not use the schema (a superuser made it and granted nothing) is
// told whose it is and what to do, not 'permission denied for schema jobs'.
export const schemaCheck = `do $$ begin
  if pg_catalog.to_regnamespace('jobs') is null then
    create schema jobs;
  end if;
exception when insufficient_privilege then
  raise exception 'creating schema jobs needs CREATE on database %: grant it to %, or have an admin run create schema jobs authorization %',
    pg_catalog.current_database(), pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(current_user) using errcode = '42501';
end $$;
do $$
declare
  -- This role and those it is a member of, read from the catalog: pg_has_role says yes to a superuser for any role.
  v_roles oid[] := (with recursive m(id) as (select r.oid from pg_catalog.pg_roles r where r.rolname = current_user
                                             union select a.roleid from pg_catalog.pg_auth_members a join m on a.member = m.id)
                    select pg_catalog.array_agg(m.id) from m);
  v_super boolean := (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user);
  -- Read from the catalog, not with to_regclass: that needs USAGE on the schema, which a role may lack
  -- (a superuser migrated it and granted none), and would answer a bare 'permission denied for schema jobs'.
  v_owner oid := (select c.relowner from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = 'jobs' and c.relname = 'migration');
begin
  -- pgdrain's schema, migrated by another role (a worker's login, or a superuser upgrading the application's
  -- install): told whose it is, not that the schema is a stranger's.
  if v_owner is not null and v_owner <> all(v_roles)
     and not (v_super and (select r.rolsuper from pg_catalog.pg_roles r where r.oid = v_owner)) then
    raise exception 'schema jobs was migrated by role %, which % is not a member of: migrate as that role (or a member of it)',
      v_owner::regrole, current_user using errcode = '42501';
  end if;
  if not exists (select 1 from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
                 where n.nspname = 'jobs' and (r.rolsuper or n.nspowner = any(v_roles))) then
    raise exception 'schema jobs belongs to role %, which % is not a member of: that role could replace the functions made in it; have a superuser drop the schema (if it holds nothing of yours), or migrate as its owner',
      (select n.nspowner::regrole from pg_catalog.pg_namespace n where n.nspname = 'jobs'), current_user using errcode = '42501';
  end if;
  -- A superuser's schema (made for this role, or its own install's) that this role may not use or create in.
  if not (pg_catalog.has_schema_privilege('jobs', 'USAGE') and pg_catalog.has_schema_privilege('jobs', 'CREATE')) then
    raise exception 'schema jobs belongs to role %, which gives % no USAGE and CREATE on it: have it grant them (grant usage, create on schema jobs to %) or run alter schema jobs owner to %',
      (select n.nspowner::regrole from pg_catalog.pg_namespace n where n.nspname = 'jobs'), current_user,
      pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(current_user) using errcode = '42501';
  end if;
end $$;`;

// Another tool's schema jobs: pgdrain would make its tables beside theirs,
// or take their jobs.migration for its own record (adding a column to it,
// writing its versions in it). One without pgdrain's record must be empty;
// a record must have pgdrain's columns. migrate() and --print --pending only: a team's own tool
// running migrationSql() may keep its history in the schema it migrates.
export const foreignCheck = `do $$
declare
  v_found text;
begin
  if pg_catalog.to_regclass('jobs.migration') is null then
    select coalesce((select 'relation jobs.' || c.relname from pg_catalog.pg_class c
                     where c.relnamespace = 'jobs'::regnamespace order by c.relname limit 1),
                    (select 'routine ' || p.oid::regprocedure::text from pg_catalog.pg_proc p
                     where p.pronamespace = 'jobs'::regnamespace limit 1),
                    (select 'type jobs.' || t.typname from pg_catalog.pg_type t
                     where t.typnamespace = 'jobs'::regnamespace limit 1))
    into v_found;
  elsif (select count(*) from pg_catalog.pg_attribute a
         where a.attrelid = pg_catalog.to_regclass('jobs.migration') and not a.attisdropped
           and (a.attname, a.atttypid) in (('version', 'integer'::regtype), ('name', 'text'::regtype),
                                           ('applied_at', 'timestamptz'::regtype))) < 3 then
    v_found := 'a table jobs.migration without pgdrain''s columns (version integer, name text, applied_at timestamptz)';
  end if;
  if v_found is not null then
    raise exception 'schema jobs holds % that pgdrain did not make (another tool''s?): pgdrain needs schema jobs to itself; move that tool''s schema (alter schema jobs rename to ...) or install pgdrain in another database',
      v_found using errcode = '42P07';
  end if;
end $$;`;

// Readable by PUBLIC (a role still needs USAGE on the schema): versions,
// names and checksums, no job; so a role that may not create in the schema
// (an application's login running migrate on every start) can see that
// there is nothing to do (readRecord, below).
export const record = `create table if not exists jobs.migration (
  version    integer primary key,
  name       text not null,
  applied_at timestamptz not null default now(),
  checksum   text
);
grant select on jobs.migration to public;
do $$ begin
  if not exists (select 1 from pg_attribute
                 where attrelid = 'jobs.migration'::regclass and attname = 'checksum' and not attisdropped) then
    alter table jobs.migration add column checksum text;
  end if;
end $$;`;

// The prefixes jobs.create_roles ran with in this database: its three roles
// exist and each was granted USAGE on schema jobs (roles of the same prefix
// made for another database of the cluster have none on this one). Run
// again for each: new routines lose PUBLIC's EXECUTE and get the roles'.
// Only where it ran (rolesRan), and only for the prefixes it ran with: its
// worker has its column grant on jobs.job_queue (select (job_id), which it
// alone makes). Roles a team made and granted by hand under such names are
// not create_roles' to change (their _admin would get DML on every table).
export const regrant = `select jobs.create_roles(p.prefix)
from (select pg_catalog.left(r.rolname, -6) as prefix from pg_catalog.pg_roles r where r.rolname like '%\\_admin') p
where p.prefix ~ '^[a-z_][a-z0-9_]{0,40}$'
  and (select count(distinct g.rolname) from pg_catalog.pg_namespace n
         cross join pg_catalog.aclexplode(n.nspacl) a join pg_catalog.pg_roles g on g.oid = a.grantee
       where n.nspname = 'jobs' and a.privilege_type = 'USAGE'
         and g.rolname in (p.prefix || '_publisher', p.prefix || '_worker', p.prefix || '_admin')) = 3
  and exists (select 1 from pg_catalog.pg_attribute a, pg_catalog.aclexplode(a.attacl) x, pg_catalog.pg_roles w
              where a.attrelid = 'jobs.job_queue'::regclass and a.attname = 'job_id' and x.privilege_type = 'SELECT'
                and w.rolname = p.prefix || '_worker' and x.grantee = w.oid)`;

// Whether jobs.create_roles ran in this database, read before an upgrade:
// it takes PUBLIC's EXECUTE on every routine of the schema, its own
// included, which no migration takes.
export const rolesRan = `select not pg_catalog.has_function_privilege('public', p, 'EXECUTE') as ran
from pg_catalog.to_regprocedure('jobs.create_roles(text)') p`;
