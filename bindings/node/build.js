#!/usr/bin/env node
'use strict';
// build.js -- compiles the addon (src/auditq_node.c) into build/auditq.node
// with the C compiler directly: no node-gyp, so no header download and no
// network. `npm install ./bindings/node` runs it (package.json "install").
//
// Where things come from (first that applies):
//   Node's headers   NODE_INCLUDE, else <node prefix>/include/node, else
//                    /usr/include/node (Debian: libnode-dev / nodejs)
//   libauditq        AUDITQ_LIB (a libauditq.a) + AUDITQ_INCLUDE (dir of
//                    auditq.h); else the repository's build: ../../$BUILD/lib
//                    /libauditq.a (BUILD defaults to build; run `make` first);
//                    else an installed one through `pkg-config auditq`.
// libauditq.a is linked in whole, so the addon needs only hiredis,
// msgpack-c and libcrypto at run time. CC, CFLAGS and WERROR=1 (-Werror) are honoured.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const here = __dirname;
const root = path.resolve(here, '..', '..');

function fail(msg) {
  process.stderr.write(`auditq build: ${msg}\n`);
  process.exit(1);
}

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function split(s) {
  return s ? s.split(/\s+/).filter(Boolean) : [];
}

function nodeInclude() {
  const cands = [process.env.NODE_INCLUDE,
    path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node'),
    '/usr/include/node'];
  for (const d of cands) {
    if (d && fs.existsSync(path.join(d, 'node_api.h'))) return d;
  }
  return fail('node_api.h not found (tried ' + cands.filter(Boolean).join(', ') +
    '): install Node\'s headers (Debian: apt-get install libnode-dev) or set NODE_INCLUDE');
}

function auditqFlags() {
  if (process.env.AUDITQ_LIB) {
    const inc = process.env.AUDITQ_INCLUDE || path.join(root, 'include');
    return { cflags: ['-I' + inc], libs: [process.env.AUDITQ_LIB] };
  }
  const build = process.env.BUILD || 'build';
  const lib = path.join(root, build, 'lib', 'libauditq.a');
  if (fs.existsSync(lib) && fs.existsSync(path.join(root, 'include', 'auditq.h'))) {
    return { cflags: ['-I' + path.join(root, 'include')], libs: [lib] };
  }
  const pc = sh('pkg-config', ['--cflags', '--libs', '--static', 'auditq']);
  if (pc !== null) return { cflags: [], libs: split(pc) };
  return fail(`libauditq not found: no ${lib} (run make in ${root}), no pkg-config auditq ` +
    '(make install), and AUDITQ_LIB is not set');
}

const cc = process.env.CC || 'cc';
const ninc = nodeInclude();
const aq = auditqFlags();
let deps = split(sh('pkg-config', ['--libs', 'hiredis', 'msgpack']) || '-lhiredis -lmsgpackc');
if (sh('pkg-config', ['--exists', 'hiredis_ssl']) !== null) deps = deps.concat(['-lhiredis_ssl', '-lssl']);
deps.push('-lcrypto'); // protect_fields' HMAC-SHA256 (producer/protect.c)
const out = path.join(here, 'build', 'auditq.node');
fs.mkdirSync(path.dirname(out), { recursive: true });
const args = ['-std=c11', '-D_GNU_SOURCE', '-fPIC', '-shared', '-O2', '-g',
  '-Wall', '-Wextra', '-Wshadow', '-Wstrict-prototypes', '-Wmissing-prototypes',
  ...(process.env.WERROR ? ['-Werror'] : []), ...split(process.env.CFLAGS), '-fvisibility=hidden', '-DNODE_GYP_MODULE_NAME=auditq',
  '-I' + ninc, ...aq.cflags, '-o', out + '.tmp', path.join(here, 'src', 'auditq_node.c'),
  ...aq.libs, ...deps, '-lpthread', '-Wl,--exclude-libs,ALL'];
process.stdout.write(`${cc} ${args.join(' ')}\n`);
try {
  execFileSync(cc, args, { stdio: 'inherit' });
} catch {
  fail(`${cc} failed (command above)`);
}
fs.renameSync(out + '.tmp', out);
