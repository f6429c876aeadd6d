'use strict';
// Helpers of the node --test suite. The servers are the ones
// tests/integration/it_62_node.sh starts (tests/lib/harness.sh): PGHOST/PGPORT/
// PGUSER/PGDATABASE, AUDITQ_REDIS_URL, REDIS_PORT, AQ_TMP; Redis is stopped
// and started through AQ_REDIS_CTL (a FIFO the wrapper serves).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const scale = Number(process.env.AQ_TIME_SCALE || 1);
const redisUrl = process.env.AUDITQ_REDIS_URL;
const tmp = process.env.AQ_TMP;
if (!redisUrl || !process.env.PGPORT || !tmp) {
  throw new Error('run through tests/integration/it_62_node.sh (needs the harness servers)');
}

function psql(sql) {
  return execFileSync('psql', ['-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', maxBuffer: 1 << 30, stdio: ['ignore', 'pipe', 'inherit'] }).replace(/\n$/, '');
}

// Rows of a query as parsed JSON objects (json_agg: text exactly as stored).
function rowsJson(sql) {
  const out = psql(`SELECT coalesce(json_agg(t), '[]') FROM (${sql}) t`);
  return JSON.parse(out);
}

function count(where) {
  return Number(psql(`SELECT count(*) FROM audit_events WHERE ${where}`));
}

function redisCli(...args) {
  return execFileSync('redis-cli', ['-p', process.env.REDIS_PORT, ...args], { encoding: 'utf8' }).trim();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(secs, fn, what) {
  const end = Date.now() + secs * 1000 * scale;
  let last;
  while (Date.now() < end) {
    last = fn();
    if (last === true) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${secs * scale} s waiting for ${what} (last: ${last})`);
}

// Waits until `where` matches exactly n rows (fails on more, at once).
async function waitRows(secs, where, n) {
  await waitFor(secs, () => {
    const c = count(where);
    if (c > n) throw new Error(`${c} rows match ${where}, expected ${n}`);
    return c === n || `${c} rows`;
  }, `${n} rows where ${where}`);
}

let ctlSeq = 0;
// Stops or starts the harness Redis (same port, AOF kept): the wrapper reads
// "SEQ CMD" from the FIFO and writes "SEQ rc" to AQ_REDIS_CTL.ack.
async function redisCtl(cmd) {
  const fifo = process.env.AQ_REDIS_CTL;
  const seq = ++ctlSeq;
  fs.writeFileSync(fifo, `${seq} ${cmd}\n`);
  const ack = fifo + '.ack';
  await waitFor(30, () => {
    try {
      const [s, rc] = fs.readFileSync(ack, 'utf8').trim().split(' ');
      if (Number(s) !== seq) return 'waiting';
      if (rc !== '0') throw new Error(`redis ${cmd} failed (rc ${rc})`);
      return true;
    } catch (e) {
      if (e.code === 'ENOENT') return 'no ack yet';
      throw e;
    }
  }, `redis ${cmd}`);
}

// A string with every character class the issue names, made unique by tag.
function hostile(tag, i) {
  return `q"uo'te\ttab\nnl\r\\bs😀 é ü ✓ 日本 ${tag}-${i}`;
}

module.exports = { psql, rowsJson, count, waitRows, redisCli, sleep, waitFor, redisCtl, hostile, scale, redisUrl, tmp,
  addon: path.join(__dirname, '..') };
