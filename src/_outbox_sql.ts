// Copyright 2026 the @eventbus/core authors. MIT license.
// The SQL of the PostgreSQL outbox: table names, the migration, and every
// statement the outbox and its relay run. Parameters are always passed as
// text (or null) and cast in SQL, so every driver sends them the same way;
// results are text or int4 for the same reason.

/** `[schema.]table`, lower case: both parts are SQL identifiers. */
const TABLE_NAME = /^(?:([a-z_][a-z0-9_]{0,62})\.)?([a-z_][a-z0-9_]{0,47})$/;

/** The names derived from one outbox table, quoted where SQL needs it. */
export interface OutboxNames {
  /** The table name as given, such as `"eventbus_outbox"`. */
  readonly name: string;
  /** The outbox table, quoted and qualified. */
  readonly table: string;
  /** The dead table `<table>_dead`, quoted and qualified. */
  readonly dead: string;
  /** The commit-number sequence, quoted and qualified. */
  readonly sequence: string;
  /** The commit-number trigger function, quoted and qualified. */
  readonly func: string;
  /** The unqualified base name, for index and trigger names. */
  readonly base: string;
  /** The NOTIFY channel: the table name as given. */
  readonly channel: string;
}

/**
 * Checks a table name and derives the names of everything the outbox
 * creates beside it.
 *
 * @throws {TypeError} When the name is not `[schema.]table` in lower case.
 */
export function outboxNames(name: unknown): OutboxNames {
  const match = typeof name === "string" ? TABLE_NAME.exec(name) : null;
  if (match === null) {
    throw new TypeError(
      `Cannot create PostgresOutbox: table must be a lower-case SQL name such as "eventbus_outbox" or "app.eventbus_outbox" (letters, digits and _, at most 48 characters), got ${
        typeof name === "string" ? JSON.stringify(name) : typeof name
      }`,
    );
  }
  const schema = match[1];
  const base = match[2]!;
  const qualify = (object: string): string =>
    schema === undefined ? `"${object}"` : `"${schema}"."${object}"`;
  return {
    name: name as string,
    table: qualify(base),
    dead: qualify(`${base}_dead`),
    sequence: qualify(`${base}_commit_seq`),
    func: qualify(`${base}_commit`),
    base,
    channel: name as string,
  };
}

/** The statements of the migration, without the trigger's creation. */
function schemaStatements(n: OutboxNames): string[] {
  const { table, dead, sequence, func, base } = n;
  const lockClass = `hashtext('eventbus_outbox:${n.name}')`;
  return [
    `CREATE TABLE IF NOT EXISTS ${table} (
  seq           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id            text        NOT NULL UNIQUE,
  type          text        NOT NULL,
  partition_key text,
  event         text        NOT NULL,
  tx_id         xid8        NOT NULL DEFAULT pg_current_xact_id(),
  commit_seq    bigint,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  deliver_after timestamptz NOT NULL DEFAULT now(),
  attempts      integer     NOT NULL DEFAULT 0,
  lease_until   timestamptz,
  last_error    text
)`,
    `CREATE INDEX IF NOT EXISTS "${base}_next" ON ${table} (commit_seq, seq)`,
    `CREATE INDEX IF NOT EXISTS "${base}_key" ON ${table} (partition_key, commit_seq, seq) WHERE partition_key IS NOT NULL`,
    `CREATE INDEX IF NOT EXISTS "${base}_uncommitted" ON ${table} (tx_id) WHERE commit_seq IS NULL`,
    `CREATE TABLE IF NOT EXISTS ${dead} (
  seq           bigint      PRIMARY KEY,
  id            text        NOT NULL,
  type          text        NOT NULL,
  partition_key text,
  event         text        NOT NULL,
  attempts      integer     NOT NULL,
  error         text        NOT NULL,
  reason        text        NOT NULL DEFAULT 'rejected',
  created_at    timestamptz NOT NULL,
  dead_at       timestamptz NOT NULL DEFAULT clock_timestamp()
)`,
    // Dead tables created before the reason column get it.
    `ALTER TABLE ${dead} ADD COLUMN IF NOT EXISTS reason text NOT NULL DEFAULT 'rejected'`,
    `CREATE SEQUENCE IF NOT EXISTS ${sequence}`,
    // Runs at commit (a deferred constraint trigger): numbers the
    // transaction's rows with one commit number, after taking, in a fixed
    // order, a lock per partition key held until the commit is visible. Two
    // transactions with rows of one key therefore get commit numbers in
    // commit order, whatever order they started or wrote in. The first
    // firing numbers every row of the transaction; later ones find none.
    `CREATE OR REPLACE FUNCTION ${func}() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  key_hash integer;
  commit_number bigint;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM ${table}
                  WHERE tx_id = pg_current_xact_id() AND commit_seq IS NULL) THEN
    RETURN NULL;
  END IF;
  FOR key_hash IN
    SELECT DISTINCT hashtext(partition_key) FROM ${table}
     WHERE tx_id = pg_current_xact_id() AND commit_seq IS NULL
       AND partition_key IS NOT NULL
     ORDER BY 1
  LOOP
    PERFORM pg_advisory_xact_lock(${lockClass}, key_hash);
  END LOOP;
  commit_number := nextval('${sequence.replaceAll("'", "''")}');
  UPDATE ${table} SET commit_seq = commit_number
   WHERE tx_id = pg_current_xact_id() AND commit_seq IS NULL;
  RETURN NULL;
END
$fn$`,
  ];
}

/** The trigger's creation: constraint triggers have no OR REPLACE. */
function triggerBlock(n: OutboxNames): string {
  return `IF NOT EXISTS (SELECT 1 FROM pg_trigger
                  WHERE tgrelid = '${n.table}'::regclass AND tgname = '${n.base}_commit') THEN
    CREATE CONSTRAINT TRIGGER "${n.base}_commit" AFTER INSERT ON ${n.table}
      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${n.func}();
  END IF;`;
}

/** The DDL for users' own migration tools: idempotent statements. */
export function migrationText(n: OutboxNames): string {
  return `-- @eventbus/core transactional outbox "${n.name}" (PostgreSQL 13 or later)\n${
    schemaStatements(n).map((s) => `${s};\n`).join("\n")
  }\nDO $do$ BEGIN\n  ${triggerBlock(n)}\nEND $do$;\n`;
}

/**
 * The migration as one statement (a DO block), serialized against
 * concurrent migrations of the same table by an advisory lock, without the
 * notices that `IF NOT EXISTS` prints.
 */
export function migrationBlock(n: OutboxNames): string {
  return `DO $migrate$ BEGIN
  SET LOCAL client_min_messages = warning;
  PERFORM pg_advisory_xact_lock(hashtext('eventbus_outbox_migrate'), hashtext('${n.name}'));
${schemaStatements(n).map((s) => `${s};`).join("\n")}
  ${triggerBlock(n)}
END $migrate$`;
}

/** Every statement the outbox runs at run time. */
export interface OutboxStatements {
  /** $1 id, $2 type, $3 partition key, $4 event JSON. */
  readonly insert: string;
  /** As insert, and $5 the channel to notify when a row was added. */
  readonly insertNotify: string;
  /** $1 batch size, $2 lease in ms. */
  readonly claim: string;
  /** $1 seqs as a bigint[] literal. */
  readonly delete: string;
  /** $1 seqs, $2 attempts (int[] literals), $3 error or null. */
  readonly release: string;
  /** $1 seq, $2 attempts, $3 delay in ms, $4 error. */
  readonly retryLater: string;
  /** $1 seq, $2 attempts, $3 error, $4 reason. */
  readonly bury: string;
  /** No parameters. */
  readonly stats: string;
  /**
   * The dead rows a selection matches, counted (`n`). The selection's
   * parameters, each null for "any": $1 seqs as a bigint[] literal, $2 event
   * ids as a JSON array, $3 event type.
   */
  readonly deadCount: string;
  /** A selection's dead rows, oldest first: as deadCount, $4 after this seq, $5 limit. */
  readonly deadList: string;
  /**
   * Moves a selection's dead rows back into the outbox table (one per
   * event id, none whose id waits there already), returning their ids.
   */
  readonly deadReplay: string;
  /** How many dead rows of a selection deadReplay would move (`n`). */
  readonly deadReplayCount: string;
  /** Deletes a selection's dead rows, counted (`n`). */
  readonly deadPurge: string;
}

const RFC3339 = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;

/** Builds the run-time statements of one table. */
export function outboxStatements(n: OutboxNames): OutboxStatements {
  const { table, dead } = n;
  const selected = `($1::text IS NULL OR d.seq = ANY($1::text::bigint[]))
   AND ($2::text IS NULL OR d.id IN (SELECT jsonb_array_elements_text($2::text::jsonb)))
   AND ($3::text IS NULL OR d.type = $3::text)`;
  // A dead row whose event id waits in the outbox table stays dead: the
  // waiting row is published anyway, and its id is taken.
  const replayable =
    `${selected}\n   AND NOT EXISTS (SELECT 1 FROM ${table} o WHERE o.id = d.id)`;
  const insert =
    `INSERT INTO ${table} (id, type, partition_key, event) VALUES ($1::text, $2::text, $3::text, $4::text) ON CONFLICT (id) DO NOTHING`;
  return {
    insert,
    insertNotify:
      `WITH added AS (${insert} RETURNING 1) SELECT pg_notify($5::text, '') FROM added`,
    // Claims the first rows in commit order that are due and free, skipping
    // rows other relays hold (SKIP LOCKED) and every row of a partition key
    // whose earlier row is still leased or waiting for a retry: a key's
    // events leave in commit order even across relay restarts and retries.
    // The lease is taken in this one short statement: no lock is held
    // while the relay publishes.
    claim: `WITH next AS (
  SELECT o.seq FROM ${table} o
   WHERE o.deliver_after <= now()
     AND (o.lease_until IS NULL OR o.lease_until < now())
     AND (o.partition_key IS NULL OR NOT EXISTS (
       SELECT 1 FROM ${table} e
        WHERE e.partition_key = o.partition_key
          AND (e.commit_seq, e.seq) < (o.commit_seq, o.seq)
          AND (e.lease_until >= now() OR e.deliver_after > now())))
   ORDER BY o.commit_seq, o.seq
   LIMIT $1::int
   FOR UPDATE SKIP LOCKED)
UPDATE ${table} o
   SET lease_until = now() + $2::int * interval '1 millisecond',
       attempts = o.attempts + 1
  FROM next WHERE o.seq = next.seq
RETURNING o.seq::text AS seq, o.commit_seq::text AS commit_seq,
          o.partition_key, o.event, o.attempts`,
    delete: `DELETE FROM ${table} WHERE seq = ANY($1::text::bigint[])`,
    // Hands claimed rows back untried (close, an outage, a chain stopped
    // before them): the claim's attempt is taken back. Only rows still
    // holding this claim's attempt count, so a row another relay claimed
    // since (its lease ran out) is left alone.
    release: `UPDATE ${table} o
   SET lease_until = NULL, attempts = greatest(o.attempts - 1, 0),
       last_error = coalesce($3::text, o.last_error)
  FROM unnest($1::text::bigint[], $2::int[]) AS r(seq, attempts)
 WHERE o.seq = r.seq AND o.attempts = r.attempts`,
    retryLater: `UPDATE ${table}
   SET lease_until = NULL,
       deliver_after = now() + $3::int * interval '1 millisecond',
       last_error = $4::text
 WHERE seq = $1::bigint AND attempts = $2::int`,
    bury: `WITH gone AS (
  DELETE FROM ${table} WHERE seq = $1::bigint AND attempts = $2::int
  RETURNING seq, id, type, partition_key, event, attempts, created_at)
INSERT INTO ${dead} (seq, id, type, partition_key, event, attempts, error, reason, created_at)
SELECT seq, id, type, partition_key, event, attempts, $3::text, $4::text, created_at FROM gone
ON CONFLICT (seq) DO NOTHING`,
    stats: `SELECT count(*)::int AS waiting,
       (extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::float8 AS oldest_ms,
       (SELECT count(*)::int FROM ${dead}) AS dead
  FROM ${table}`,
    deadCount: `SELECT count(*)::int AS n FROM ${dead} d WHERE ${selected}`,
    deadList:
      `SELECT d.seq::text AS seq, d.event, d.attempts, d.reason, d.error,
       to_char(d.dead_at AT TIME ZONE 'UTC', ${RFC3339}) AS dead_at
  FROM ${dead} d WHERE ${selected} AND d.seq > $4::bigint
 ORDER BY d.seq LIMIT $5::int`,
    // One statement: a crash leaves the row dead or waiting, never neither.
    // The new row gets a new seq and commit number; the relay publishes it
    // again under the same event id.
    deadReplay: `WITH picked AS (
  SELECT DISTINCT ON (d.id) d.seq FROM ${dead} d
   WHERE ${replayable}
   ORDER BY d.id, d.seq),
back AS (
  DELETE FROM ${dead} d USING picked WHERE d.seq = picked.seq
  RETURNING d.seq, d.id, d.type, d.partition_key, d.event)
INSERT INTO ${table} (id, type, partition_key, event)
SELECT id, type, partition_key, event FROM back ORDER BY seq
ON CONFLICT (id) DO NOTHING
RETURNING id`,
    deadReplayCount:
      `SELECT count(DISTINCT d.id)::int AS n FROM ${dead} d WHERE ${replayable}`,
    deadPurge: `WITH gone AS (
  DELETE FROM ${dead} d WHERE ${selected}
  RETURNING 1)
SELECT count(*)::int AS n FROM gone`,
  };
}

/** A PostgreSQL array literal of integers (given as decimal strings). */
export function intArray(values: readonly (string | number)[]): string {
  return `{${values.join(",")}}`;
}
