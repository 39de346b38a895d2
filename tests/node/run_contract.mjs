// Runs the statements of docs/go-integration.md through node-postgres, a driver that is not Python,
// and prints what came back as JSON: column names and type OIDs, each value with its JavaScript type,
// or the error's SQLSTATE. Usage: node run_contract.mjs <doc.md> '<{"name": [params], "name@case": [params]}>'
// Calls run in the order given, on one connection, as the role in PGUSER (PGHOST, PGPORT, PGDATABASE too).
//
// json/jsonb and timestamptz values are passed on as the server's text, as a Go client decodes them:
// JSON integers keep all 64 bits (JavaScript numbers would round a queryid), timestamps keep their zone.
import { readFileSync } from 'node:fs';
import pg from 'pg';

const [docPath, callsJson] = process.argv.slice(2);
const calls = JSON.parse(callsJson);
const statements = Object.fromEntries(
  [...readFileSync(docPath, 'utf8').matchAll(/```sql\n-- contract: ([\w-]+)\n([\s\S]*?)```/g)]
    .map(([, name, sql]) => [name, sql.trim()]),
);

const AS_TEXT = { 114: 'json', 3802: 'json', 1184: 'timestamptz' };
const types = {
  getTypeParser: (oid, format) => (AS_TEXT[oid] ? (text) => text : pg.types.getTypeParser(oid, format)),
};

function describe(value, oid) {
  if (value === null) return { type: 'null', value };
  if (AS_TEXT[oid]) return { type: AS_TEXT[oid], value };
  if (Array.isArray(value)) return { type: 'array', value };
  return { type: typeof value, value };
}

const client = new pg.Client({ types });
await client.connect();
const results = { documented: Object.keys(statements) };
for (const [call, params] of Object.entries(calls)) {
  const sql = statements[call.split('@')[0]];
  if (sql === undefined) {
    results[call] = { missing: true };
    continue;
  }
  try {
    const res = await client.query(sql, params);
    const oids = Object.fromEntries(res.fields.map((f) => [f.name, f.dataTypeID]));
    results[call] = {
      fields: res.fields.map((f) => ({ name: f.name, type_oid: f.dataTypeID })),
      rows: res.rows.map((row) =>
        Object.fromEntries(Object.entries(row).map(([k, v]) => [k, describe(v, oids[k])])),
      ),
    };
  } catch (err) {
    results[call] = { error: { sqlstate: err.code, message: err.message, hint: err.hint ?? null } };
  }
}
await client.end();
console.log(JSON.stringify(results));
