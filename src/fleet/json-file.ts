// An operator's JSON file (credentials, TLS, pools, a JSON inventory) read with errors that say where
// it is wrong — line and column — and what is wrong, in words, never quoting the file: V8's JSON.parse
// message quotes the text around the fault (`Unexpected token 'h', ..."assword": hunter2}}" is not
// valid JSON`), and in a credentials file that text is a password.
import { readFileSync } from 'node:fs';
import { fileProblem } from '../core/file-problem.js';

interface SyntaxFault {
  at: number;
  problem: string;
}

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const ESCAPE = /\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})/y;

/** The offset and kind of the first syntax error in `s`, or undefined when it is valid JSON. */
export function jsonSyntaxFault(s: string): SyntaxFault | undefined {
  let i = 0;
  const fail = (problem: string): never => {
    throw { at: i, problem } satisfies SyntaxFault;
  };
  const ws = () => {
    while (s[i] === ' ' || s[i] === '\t' || s[i] === '\n' || s[i] === '\r') i++;
  };
  const string = () => {
    i++; // the opening quote
    for (;;) {
      const c = s[i];
      if (c === undefined) fail('a string is not closed (a missing ")');
      if (c === '"') return void i++;
      if (c === '\\') {
        ESCAPE.lastIndex = i;
        if (!ESCAPE.test(s)) fail('a bad escape in a string (a single \\ must be written \\\\)');
        i = ESCAPE.lastIndex;
      } else if (c! < ' ') fail('a line break or control character inside a string');
      else i++;
    }
  };
  const items = (close: string, item: () => void) => {
    i++; // the opening bracket
    ws();
    if (s[i] === close) return void i++;
    for (;;) {
      item();
      ws();
      if (s[i] === close) return void i++;
      if (s[i] !== ',') fail(s[i] === undefined ? 'the file ends inside an object or array' : `a missing "," or "${close}"`);
      i++;
      ws();
      if (s[i] === close) fail(`a trailing comma before "${close}"`);
    }
  };
  const value = (): void => {
    ws();
    const c = s[i];
    if (c === '{') {
      return items('}', () => {
        ws();
        if (s[i] !== '"') fail('a property name that is not in "double quotes"');
        string();
        ws();
        if (s[i] !== ':') fail('a missing ":" after a property name');
        i++;
        value();
      });
    }
    if (c === '[') return items(']', value);
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(s)) fail('a malformed number');
      i = NUMBER.lastIndex;
      return;
    }
    for (const word of ['true', 'false', 'null']) {
      if (s.startsWith(word, i)) {
        i += word.length;
        return;
      }
    }
    fail(c === undefined ? 'the file ends where a value should be' : 'a value that is not a "string", number, true, false, null, {object} or [array] (text without quotes?)');
  };
  try {
    value();
    ws();
    if (i < s.length) fail('more text after the end of the JSON value');
    return undefined;
  } catch (e) {
    if (e instanceof RangeError) return { at: 0, problem: 'nested too deeply' };
    return e as SyntaxFault;
  }
}

/** Parses JSON text (a leading byte-order mark allowed); a syntax error says line, column and what, not the text. */
export function parseJson(text: string): unknown {
  const s = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  try {
    return JSON.parse(s);
  } catch {
    const fault = jsonSyntaxFault(s) ?? { at: 0, problem: 'not valid JSON' };
    const before = s.slice(0, fault.at);
    const line = before.split('\n').length;
    const column = fault.at - before.lastIndexOf('\n');
    throw new Error(`not valid JSON: line ${line}, column ${column}: ${fault.problem}`);
  }
}

/** Reads and parses a JSON file; errors read `${label}: no such file`, `${label}: not valid JSON: line 3, …`. */
export function readJsonFile(file: string, label: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${label}: ${fileProblem(err)}`);
  }
  try {
    return parseJson(text);
  } catch (err) {
    throw new Error(`${label}: ${(err as Error).message}`);
  }
}
