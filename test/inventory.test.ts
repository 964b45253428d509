// Inventory and credentials input: every error names the file, the line and field, and the value.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCredentialProfiles, loginOf, missingProfiles } from '../src/fleet/credentials.js';
import { parseJson } from '../src/fleet/json-file.js';
import { InventoryError, loadInventory, parseInventory } from '../src/producer/inventory.js';
import { parseCsv } from '../src/producer/csv.js';
import { assertTargetProfiles } from '../src/producer/run-local.js';

describe('inventory', () => {
  it('reads CSV with defaults (port 50051, credentials default) and ;-separated tags', () => {
    const inv = parseInventory('id,host,port,site,tags,credentials\nm1,10.0.0.1,,site-a,rack-1;row-2,\nm2,miner-2.farm.local,50052,site-b,,ops\n', 'farm.csv');
    expect(inv.targets).toEqual([
      { minerId: 'm1', host: '10.0.0.1', port: 50051, site: 'site-a', tags: ['rack-1', 'row-2'], credentials: 'default' },
      { minerId: 'm2', host: 'miner-2.farm.local', port: 50052, site: 'site-b', tags: [], credentials: 'ops' },
    ]);
    expect(inv.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reads JSON (an array or {miners: [...]}) with tags as an array', () => {
    const inv = parseInventory(JSON.stringify({ miners: [{ id: 'a', host: '10.0.0.9', tags: ['x'] }] }), 'farm.json');
    expect(inv.targets[0]).toMatchObject({ minerId: 'a', port: 50051, tags: ['x'] });
  });

  it('rejects the whole file and names file, line, field and value of each problem', () => {
    const text = 'id,host,port\nm1,10.0.0.1,50051\nm2,999.1.1.1,50051\nm3,10.0.0.3,70000\nm1,10.0.0.4,\n,10.0.0.5,\nm6,10.0.0.1,50051\n';
    let err: InventoryError | undefined;
    try {
      parseInventory(text, 'farm.csv');
    } catch (e) {
      err = e as InventoryError;
    }
    expect(err).toBeInstanceOf(InventoryError);
    expect(err?.message).toContain('inventory farm.csv rejected');
    expect(err?.message).toContain('nothing enqueued');
    expect(err?.problems).toEqual([
      'line 3: field host: "999.1.1.1" is not an IP address or hostname',
      expect.stringMatching(/^line 4: field port: "70000" .*65535/),
      'line 5: field id: "m1" duplicates line 2',
      'line 6: field id: is missing or empty (it is required)',
      'line 7: field host: "10.0.0.1:50051" duplicates line 2',
    ]);
  });

  it('a row with more fields than the header is one problem among the others, with what usually causes it', () => {
    const text = 'id,host,tags\nm1,10.0.0.1,rack-1,row-2\nm1,10.0.0.2,\nm3,bad host,"rack-1,row-2"\n';
    expect(() => parseInventory(text, 'farm.csv')).toThrow(
      new InventoryError('farm.csv', [
        'line 2: 4 fields, the header has 3 (a value holding a comma must be in double quotes; tags are separated by ";")',
        'line 4: field host: "bad host" is not an IP address or hostname',
      ]).message,
    );
    // A port that is no port number says which numbers are.
    const port = 'must be a whole number from 1 to 65535 (the miner\'s gRPC port, 50051 unless changed)';
    expect(() => parseInventory('[{"id": "m1", "host": "10.0.0.1", "port": "abc"}, {"id": "m2", "host": "10.0.0.2", "port": 0}, {"id": "m3", "host": "10.0.0.3", "port": 50051.5}]', 'f.json')).toThrow(
      new InventoryError('f.json', [`entry 0 (id "m1"): field port: "abc" ${port}`, `entry 1 (id "m2"): field port: 0 ${port}`, `entry 2 (id "m3"): field port: 50051.5 ${port}`]).message,
    );
    // The quoted value is one field (its comma is no separator).
    expect(parseInventory('id,host,tags\nm1,10.0.0.1,"rack-1,row-2"\n', 'f.csv').targets[0]?.tags).toEqual(['rack-1,row-2']);
  });

  it('refuses ids BullMQ cannot use and a header without id/host', () => {
    expect(() => parseInventory('id,host\na:b,10.0.0.1\n', 'f.csv')).toThrow(/line 2: field id: "a:b" must be/);
    expect(() => parseInventory('id,host\nm1,10.0.0.1:50051\n', 'f.csv')).toThrow('line 2: field host: "10.0.0.1:50051" is not an IP address or hostname (the port goes in the port column)');
    // An IPv6 address as written in a URL: the brackets go (and the port to its column).
    expect(() => parseInventory('id,host\nm1,[fd00::5]\n', 'f.csv')).toThrow('line 2: field host: "[fd00::5]" is not an IP address or hostname (an IPv6 address goes without brackets: fd00::5)');
    expect(() => parseInventory('id,host\nm1,[fd00::5]:50051\n', 'f.csv')).toThrow('line 2: field host: "[fd00::5]:50051" is not an IP address or hostname (an IPv6 address goes without brackets: fd00::5, the port in the port column)');
    expect(parseInventory('id,host\nm1,fd00::5\n', 'f.csv').targets[0]).toMatchObject({ host: 'fd00::5', port: 50051 });
    expect(() => parseInventory('[{"id": "m1"}]', 'f.json')).toThrow('entry 0 (id "m1"): field host: is missing or empty (it is required)');
    expect(() => parseInventory('[{"id": "m1", "host": "10.0.0.1"}, 5, ["m2"], null]', 'f.json')).toThrow('entry 1: must be an object {"id", "host", …}, got 5\n  entry 2: must be an object {"id", "host", …}, got ["m2"]\n  entry 3: must be an object {"id", "host", …}, got null');
    expect(() => parseInventory('id,host\n12345,10.0.0.1\n', 'f.csv')).toThrow(/must not be all digits/);
    expect(() => parseInventory('name,ip\nx,10.0.0.1\n', 'f.csv')).toThrow(/header row must name at least "id" and "host"/);
    // Numeric forms the resolver reads as another address are no host names.
    for (const host of ['0x7f.0.0.1', '127.1', '2130706433', '10.0.0.010', '0x0a000001']) {
      expect(() => parseInventory(`id,host\nm1,${host}\n`, 'f.csv')).toThrow(`line 2: field host: "${host}" is not an IP address or hostname`);
    }
    expect(parseInventory('id,host\nm1,miner-0x7f.farm\nm2,rack10.a1\n', 'f.csv').targets.map((t) => t.host)).toEqual(['miner-0x7f.farm', 'rack10.a1']);
    expect(() => parseInventory('id,host\nm1,Miner1.Farm\nm2,miner1.farm\n', 'f.csv')).toThrow('line 3: field host: "miner1.farm:50051" duplicates line 2');
    expect(() => parseInventory('id,host\nm1,fd00::0001\nm2,FD00:0:0:0:0:0:0:1\n', 'f.csv')).toThrow('line 3: field host: "[fd00::1]:50051" duplicates line 2');
    // A spreadsheet in another locale saves with ';' or tabs: said so.
    expect(() => parseInventory('id;host;port\nm1;10.0.0.1;50051\n', 'f.csv')).toThrow('(got id;host;port): fields are separated by ";" here; save the file with commas');
    expect(() => parseInventory('id\thost\nm1\t10.0.0.1\n', 'f.csv')).toThrow('fields are separated by tabs here; save the file with commas');
    expect(() => loadInventory('/nonexistent/farm.csv')).toThrow(/inventory \/nonexistent\/farm.csv rejected.*cannot read the file: no such file/s);
  });

  it("refuses a misspelt field (it would be ignored, and every miner get the field's default); ignores other columns", () => {
    const fields = '(the fields: id, host, port, site, tags, credentials, mac)';
    // A `credential` column would put every miner on the `default` profile, a `sites` one on no site (so no TLS).
    expect(() => parseInventory('id,host,credential\nm1,10.0.0.1,ops\n', 'f.csv')).toThrow(`line 1: column "credential" is not an inventory field: did you mean "credentials"? ${fields}`);
    expect(() => parseInventory('id,host,prot,sites\nm1,10.0.0.1,50052,a\n', 'f.csv')).toThrow('line 1: column "prot" is not an inventory field: did you mean "port"?; column "sites" is not an inventory field: did you mean "site"?');
    expect(() => parseInventory('[{"id": "m1", "host": "10.0.0.1", "crendentials": "ops"}, {"id": "m2", "host": "10.0.0.2", "crendentials": "ops"}]', 'f.json')).toThrow(
      new InventoryError('f.json', [`entry 0 (id "m1"): key "crendentials" is not an inventory field: did you mean "credentials"? ${fields}`]).message,
    );
    // A farm's export has columns of its own: kept out of the way, not refused ("pool" and "state" are not typos).
    const inv = parseInventory('id,host,model,location,pool,state,ip\nm1,10.0.0.1,S21,row 5,main,ok,10.0.0.1\n', 'f.csv');
    expect(inv.targets).toEqual([{ minerId: 'm1', host: '10.0.0.1', port: 50051, site: '', tags: [], credentials: 'default' }]);
  });

  it('parses quoted CSV fields', () => {
    expect(parseCsv('a,"b,c","d ""e"""\r\n1,2,3')).toEqual([
      { line: 1, fields: ['a', 'b,c', 'd "e"'] },
      { line: 2, fields: ['1', '2', '3'] },
    ]);
  });
});

describe('credential profiles', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-creds-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('come from a file and the environment; missing ones are named', () => {
    const file = path.join(dir, 'creds.json');
    writeFileSync(file, JSON.stringify({ ops: { username: 'admin', password: 'secret' } }), { mode: 0o600 });
    const profiles = loadCredentialProfiles(file, { BOS_FLEET_USERNAME: 'root', BOS_FLEET_PASSWORD: 'pw' });
    expect(profiles.get('default')).toEqual({ username: 'root', password: 'pw' });
    expect(profiles.get('ops')).toEqual({ username: 'admin', password: 'secret' });
    expect(missingProfiles(['ops', 'site-b', 'site-b'], profiles)).toEqual(['site-b']);
  });

  it('a profile without a username is a pool password only: a miner that logs in with it is refused, named', () => {
    const file = path.join(dir, 'pool-only.json');
    writeFileSync(file, JSON.stringify({ ops: { username: 'admin', password: 'secret' }, 'pool-main': { password: 'pool-secret' } }), { mode: 0o600 });
    const profiles = loadCredentialProfiles(file, {});
    expect(profiles.get('pool-main')).toEqual({ password: 'pool-secret' });
    expect(loginOf(profiles, 'pool-main')).toBeUndefined();
    expect(loginOf(profiles, 'ops')).toEqual({ username: 'admin', password: 'secret' });
    const targets = [{ minerId: 'm0', credentials: 'ops' }, { minerId: 'm1', credentials: 'pool-main' }, { minerId: 'm2', credentials: 'pool-main' }];
    expect(() => assertTargetProfiles(targets.slice(0, 1), 'inventory farm.csv', profiles, file)).not.toThrow();
    expect(() => assertTargetProfiles(targets, 'inventory farm.csv', profiles, file)).toThrow(
      `inventory farm.csv: credentials profile "pool-main" (miners m1, m2) has no "username" in ${file}: it holds a pool password only (a pools change's passwordRef), and a miner logs in with a username: add its "username"`,
    );
    // An empty username is still refused: it is a typo, not a pool password.
    writeFileSync(file, JSON.stringify({ ops: { username: '', password: 'secret' } }), { mode: 0o600 });
    expect(() => loadCredentialProfiles(file, {})).toThrow(`credentials file ${file}: ops.username`);
  });

  it('a credentials column of wrong values (a profile per miner) is refused at once, naming five profiles and counting the rest', () => {
    const targets = Array.from({ length: 100_000 }, (_, i) => ({ minerId: `m${i}`, credentials: i < 4 ? 'ops' : `10.0.${i >> 8}.${i & 255}` }));
    const started = Date.now();
    const thrown = (() => {
      try {
        assertTargetProfiles(targets, 'inventory farm.csv', new Map(), 'creds.json');
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(Date.now() - started).toBeLessThan(5_000); // a scan per profile took minutes
    expect(thrown).toBe(
      'inventory farm.csv: credentials profiles "ops" (miners m0, m1, m2 and 1 more), "10.0.0.4" (miner m4), "10.0.0.5" (miner m5), "10.0.0.6" (miner m6), "10.0.0.7" (miner m7), and 99,992 more profiles not found: add them to creds.json ({"profile": {"username": "...", "password": "..."}})',
    );
  });

  it('from the environment: an empty user name is no profile; a half-set pair is said', () => {
    const warnings: string[] = [];
    const load = (env: NodeJS.ProcessEnv) => loadCredentialProfiles(undefined, env, (m) => warnings.push(m)).get('default');
    expect(load({ BOS_FLEET_USERNAME: '', BOS_FLEET_PASSWORD: '' })).toBeUndefined();
    expect(load({ BOS_FLEET_USERNAME: ' ', BOS_FLEET_PASSWORD: 'pw' })).toBeUndefined();
    expect(load({ BOS_FLEET_USERNAME: 'root', BOS_FLEET_PASSWORD: '' })).toEqual({ username: 'root', password: '' });
    expect(warnings).toEqual(['BOS_FLEET_PASSWORD is set but BOS_FLEET_USERNAME is not: the environment gives no "default" profile (set both)']);
    warnings.length = 0;
    expect(load({ BOS_FLEET_USERNAME: 'root' })).toEqual({ username: 'root', password: '' });
    expect(warnings).toEqual([`BOS_FLEET_PASSWORD is not set: the "default" profile logs in as "root" with an empty password (Braiins OS's factory default; set BOS_FLEET_PASSWORD= to say so and silence this)`]);
  });

  it('a file other users can read is loaded with a warning saying how to fix it; mode 600 is quiet', () => {
    const file = path.join(dir, 'open.json');
    writeFileSync(file, JSON.stringify({ ops: { username: 'admin', password: 'secret' } }), { mode: 0o644 });
    chmodSync(file, 0o644);
    const warnings: string[] = [];
    expect(loadCredentialProfiles(file, {}, (m) => warnings.push(m)).get('ops')).toEqual({ username: 'admin', password: 'secret' });
    expect(warnings).toEqual([`credentials file ${file} can be read by other users (mode 0644): chmod 600 ${file}`]);
    chmodSync(file, 0o600);
    warnings.length = 0;
    loadCredentialProfiles(file, {}, (m) => warnings.push(m));
    expect(warnings).toEqual([]);
  });

  it('a malformed file is refused without echoing any value', () => {
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ ops: { username: 'admin', password: 42 } }));
    expect(() => loadCredentialProfiles(file, {})).toThrow(/credentials file .*bad.json: ops\.password/);
    try {
      loadCredentialProfiles(file, {});
    } catch (e) {
      expect(String(e)).not.toContain('42');
    }
    writeFileSync(file, JSON.stringify({ ops: { username: 'admin' } }));
    expect(() => loadCredentialProfiles(file, {})).toThrow(`credentials file ${file}: ops.password is missing (string required)`);
  });

  it('a JSON syntax error says line, column and what, never the text around it (the password)', () => {
    const file = path.join(dir, 'typo.json');
    // The password left unquoted: V8's own message quotes the text around it.
    writeFileSync(file, '{\n  "ops": {\n    "username": "admin",\n    "password": hunter2\n  }\n}\n');
    let message = '';
    try {
      loadCredentialProfiles(file, {});
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toBe(`credentials file ${file}: not valid JSON: line 4, column 17: a value that is not a "string", number, true, false, null, {object} or [array] (text without quotes?)`);
    writeFileSync(file, '{"ops": {"username": "admin", "password": "hunter2",}}');
    expect(() => loadCredentialProfiles(file, {})).toThrow(`credentials file ${file}: not valid JSON: line 1, column 53: a trailing comma before "}"`);
    // Saved by an editor with a byte-order mark: read as it is meant.
    writeFileSync(file, '\uFEFF{"ops": {"username": "admin", "password": "hunter2"}}');
    expect(loadCredentialProfiles(file, {}).get('ops')).toEqual({ username: 'admin', password: 'hunter2' });
    expect(() => loadCredentialProfiles(path.join(dir, 'nope.json'), {})).toThrow(`credentials file ${path.join(dir, 'nope.json')}: no such file`);
    expect(() => loadCredentialProfiles(dir, {})).toThrow(`credentials file ${dir}: it is a directory, not a file`);
  });
});

describe('JSON syntax errors', () => {
  const at = (text: string) => {
    try {
      parseJson(text);
      return 'parsed';
    } catch (e) {
      return (e as Error).message;
    }
  };
  it('are located and named, for every kind of fault', () => {
    expect(at('[{"id": "m1"}, {"id": "m2"},]')).toBe('not valid JSON: line 1, column 29: a trailing comma before "]"');
    expect(at('{"a": 1 "b": 2}')).toBe('not valid JSON: line 1, column 9: a missing "," or "}"');
    expect(at("{'a': 1}")).toBe('not valid JSON: line 1, column 2: a property name that is not in "double quotes"');
    expect(at('{"a" 1}')).toBe('not valid JSON: line 1, column 6: a missing ":" after a property name');
    expect(at('{"a": "x\ny"}')).toBe('not valid JSON: line 1, column 9: a line break or control character inside a string');
    expect(at(String.raw`{"a": "C:\\dir\\x", "b": "\u00e9\"\/"}`)).toBe('parsed');
    // A Windows path written with single backslashes.
    expect(at(String.raw`{"a": "C:\dir"}`)).toBe(String.raw`not valid JSON: line 1, column 10: a bad escape in a string (a single \ must be written \\)`);
    expect(at('{"a": "abc')).toBe('not valid JSON: line 1, column 11: a string is not closed (a missing ")');
    expect(at('{"a": "abc"')).toBe('not valid JSON: line 1, column 12: the file ends inside an object or array');
    expect(at('{"a": 01}')).toBe('not valid JSON: line 1, column 8: a missing "," or "}"');
    expect(at('{"a": -}')).toBe('not valid JSON: line 1, column 7: a malformed number');
    expect(at('{"a": 1}\n}')).toBe('not valid JSON: line 2, column 1: more text after the end of the JSON value');
    expect(at('')).toBe('not valid JSON: line 1, column 1: the file ends where a value should be');
    expect(at('\uFEFF[1, -2.5e3, true, false, null, {"x": [""]}]')).toBe('parsed');
  });
});

describe('schema problems in operators\' files', () => {
  it('name the deepest problem inside a union with its full path', async () => {
    const { poolsFileSchema } = await import('../src/workers/ops/mutation-spec.js');
    const { firstIssue, issueText } = await import('../src/fleet/zod-issue.js');
    const text = (v: unknown) => {
      const r = poolsFileSchema.safeParse(v);
      const issue = r.success ? undefined : firstIssue(r.error);
      return `${issue?.path.join('.')}: ${issueText(issue)}`;
    };
    expect(text([{ name: 'Main', pools: [{ user: 'x' }] }])).toBe('0.pools.0.url: is missing (string required)');
    expect(text({ groups: [{ name: 'Main', pools: [{ url: 'u', user: 'farm.{id}' }] }] })).toBe('groups.0.pools.0.user: unknown template {id} in "farm.{id}" (known: {minerId}, {host}, {site})');
  });

  it('refuse a pool URL that is no stratum URL, and two groups of one name (every miner would refuse them)', async () => {
    const { poolsFileSchema } = await import('../src/workers/ops/mutation-spec.js');
    const problems = (v: unknown) => {
      const r = poolsFileSchema.safeParse(v);
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };
    const pool = (url: string) => ({ url, user: 'farm.{minerId}' });
    expect(problems([{ name: 'Main', pools: [pool('http://pool.example:3333'), pool('pool.example:3333')] }])).toEqual([
      '0.pools.0.url: "http://pool.example:3333" is not a stratum URL like stratum+tcp://pool.example:3333',
      '0.pools.1.url: "pool.example:3333" is not a stratum URL like stratum+tcp://pool.example:3333',
    ]);
    expect(problems([{ name: 'Main', pools: [pool('stratum+tcp://a:3333')] }, { name: 'Main', pools: [pool('stratum+tcp://b:3333')] }])).toEqual(['1.name: "Main" names two groups (a miner\'s pool groups have distinct names)']);
    expect(problems([{ name: 'Main', pools: [pool('stratum+ssl://a:3333'), pool('stratum2+tcp://{site}.pool.example:3336/9awtMD5KQgvRUh2yFbjVeT7b6')] }, { name: 'Backup', pools: [pool('stratum+tcp://b')] }])).toEqual([]);
  });
});
