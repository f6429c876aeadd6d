#!/usr/bin/env bash
# Offline proofs (issue 12): keys made by `auditqctl keygen`, a signed tree
# with inclusion and consistency proofs written by the same writer as
# `auditqctl verify --event` (tests/integration/sealtool.c), then the two
# verifiers -- `auditqctl verify --proof` (C) and tools/auditq_verify.py
# (Python, written from docs/INTEGRITY.md alone) -- must agree on every
# good and every tampered input: same exit status, same failed check.
#   1. keygen: PATH 0600 and PATH.pub, printed key = PATH.pub, no overwrite;
#   2. good proofs verify in both, with --key, without (key trusted, said),
#      and with two keys (a rotation);
#   3. tampered: checkpoint note, path element, entry, entry + leaf hash,
#      leaf index, tree size, embedded key, wrong --key, consistency path,
#      swapped checkpoints, cut JSON -- each refused by both, naming the
#      same check;
#   4. checkpoint files (Python): good, altered, another key; and the
#      example checkpoint and key printed in docs/INTEGRITY.md verify.
# No servers: everything here is offline by design.
set -euo pipefail
source "$(dirname "$0")/lib_it.sh"
harness_init
T=$AQ_TMP
CTL="$BIN/auditqctl"
VPY=("$PY" "$AQ_ROOT/tools/auditq_verify.py")
"$PY" -c 'import nacl.signing' 2>/dev/null ||
    { echo "FAIL: python3-nacl is not installed for $PY; run 'make deps'"; exit 1; }

# ---- 1. keygen ----------------------------------------------------------------
out=$("$CTL" keygen "$T/seal.key")
assert_eq 600 "$(command stat -c %a "$T/seal.key")" "signing key mode"
assert_eq 644 "$(command stat -c %a "$T/seal.key.pub")" "verifier key mode"
assert_eq "$(cat "$T/seal.key.pub")" "$(printf '%s\n' "$out" | tail -n 1)" "printed key = PATH.pub"
[[ "$(cat "$T/seal.key.pub")" =~ ^auditq\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$ ]] ||
    { echo "FAIL: verifier key text: $(cat "$T/seal.key.pub")"; exit 1; }
[[ "$(cat "$T/seal.key")" =~ ^PRIVATE\+KEY\+auditq\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}$ ]] ||
    { echo "FAIL: signing key text is not PRIVATE+KEY+auditq+<hash>+<key>"; exit 1; }
before=$(sha256sum "$T/seal.key")
rc=0
"$CTL" keygen "$T/seal.key" 2>"$T/keygen.err" || rc=$?
assert_eq 1 "$rc" "keygen over an existing key: exit status"
assert_eq "auditqctl keygen: $T/seal.key exists; keygen never overwrites a key (use --force to replace it: checkpoints it signed then verify only with its old .pub)" \
    "$(cat "$T/keygen.err")" "keygen over an existing key: message"
assert_eq "$before" "$(sha256sum "$T/seal.key")" "existing key untouched"
"$CTL" keygen "$T/other.key" >/dev/null          # same name, another key
"$CTL" keygen "$T/rot.key" --name auditq >/dev/null
it_pass "keygen writes PATH 0600 and PATH.pub, never overwrites"

# ---- 2. a signed tree with proofs --------------------------------------------
mkdir "$T/p"
"$TBIN/sealtool" gen "$T/seal.key" "$T/p" 1000 >/dev/null
assert_eq "ckpt-1000.checkpoint ckpt-333.checkpoint cons.proof incl-0.proof incl-332.proof incl-500.proof incl-999.proof" \
    "$(cd "$T/p" && ls | LC_ALL=C sort | paste -sd ' ')" "generated files"

# both FILE RC CHECK [--key K]...: both verifiers give exit status RC and
# name CHECK as the failed one ("null": none).
both() {
    local file=$1 want_rc=$2 want_check=$3 rc_c=0 rc_p=0 got_c got_p
    shift 3
    "$CTL" verify --proof "$file" --json "$@" >"$T/c.json" 2>"$T/c.err" || rc_c=$?
    "${VPY[@]}" proof "$file" --json "$@" >"$T/p.json" 2>"$T/p.err" || rc_p=$?
    got_c=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["failed"] or "null", d["verified"])' "$T/c.json")
    got_p=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["failed"] or "null", d["verified"])' "$T/p.json")
    assert_eq "$want_rc" "$rc_c" "auditqctl verify --proof $(basename "$file") $*: exit status ($(cat "$T/c.err"))"
    assert_eq "$want_rc" "$rc_p" "auditq_verify.py $(basename "$file") $*: exit status ($(cat "$T/p.err"))"
    local want_v=False
    [[ "$want_rc" == 0 ]] && want_v=True
    assert_eq "$want_check $want_v" "$got_c" "auditqctl: failed check of $(basename "$file")"
    assert_eq "$want_check $want_v" "$got_p" "auditq_verify.py: failed check of $(basename "$file")"
}

for f in incl-0 incl-332 incl-500 incl-999 cons; do
    both "$T/p/$f.proof" 0 null --key "$T/seal.key.pub"
    both "$T/p/$f.proof" 0 null
    both "$T/p/$f.proof" 0 null --key "$T/rot.key.pub" --key "$T/seal.key.pub"
done
# Without --key both say the embedded key was trusted.
"$CTL" verify --proof "$T/p/incl-500.proof" >"$T/h.out"
grep -qF "(trusted as embedded in the proof: no --key given; compare it with the log's published key)" "$T/h.out" ||
    { cat "$T/h.out"; echo "FAIL: auditqctl does not say the embedded key was trusted"; exit 1; }
assert_eq "True True" "$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_trusted_from_proof"], json.load(open(sys.argv[2]))["key_trusted_from_proof"])' \
    <("$CTL" verify --proof "$T/p/incl-500.proof" --json) <("${VPY[@]}" proof "$T/p/incl-500.proof" --json))" \
    "both report the embedded key as trusted"
id500=00000000-0000-7000-8000-0000000001f4
"$CTL" verify --proof "$T/p/incl-500.proof" --key "$T/seal.key.pub" >"$T/h.out"
assert_eq "verified: event $id500 is leaf 500 of the tree of size 1000 (origin auditq), whose root is signed by auditq; the path has 10 hashes" \
    "$(tail -n 1 "$T/h.out")" "auditqctl's verdict line"
grep -qxF "  event_id: \"$id500\"" "$T/h.out" || { cat "$T/h.out"; echo "FAIL: entry not printed"; exit 1; }
it_pass "good proofs verify in both verifiers (with --key, without, with two keys)"

# ---- 3. tampered proofs -------------------------------------------------------
# tamper IN OUT PYTHON: applies the Python statement to the proof object p.
tamper() {
    "$PY" - "$1" "$2" "$3" <<'PY'
import base64, hashlib, json, sys
p = json.load(open(sys.argv[1]))
def flip_b64(s, i=0):
    c = "B" if s[i] != "B" else "C"
    return s[:i] + c + s[i + 1:]
exec(sys.argv[3])
open(sys.argv[2], "w").write(json.dumps(p))
PY
}
I=$T/p/incl-500.proof
C=$T/p/cons.proof
tamper "$I" "$T/t1" 'lines = p["checkpoint"].split("\n"); lines[2] = flip_b64(lines[2], 5); p["checkpoint"] = "\n".join(lines)'
both "$T/t1" 1 checkpoint --key "$T/seal.key.pub"
both "$T/t1" 1 checkpoint
tamper "$I" "$T/t2" 'p["path"][3] = flip_b64(p["path"][3], 2)'
both "$T/t2" 1 path --key "$T/seal.key.pub"
# The entry: one byte of the action changed, leaf_hash left as it was.
tamper "$I" "$T/t3" 'e = base64.b64decode(p["entry"]); e = e.replace(b"document.update", b"document.delete"); p["entry"] = base64.b64encode(e).decode()'
both "$T/t3" 1 leaf_hash --key "$T/seal.key.pub"
"$CTL" verify --proof "$T/t3" --key "$T/seal.key.pub" >"$T/h.out" 2>/dev/null || true
grep -q '^FAILED (leaf_hash): the entry hashes to .*, the proof'"'"'s leaf_hash is .*: the entry was altered$' "$T/h.out" ||
    { cat "$T/h.out"; echo "FAIL: auditqctl's message for an altered entry"; exit 1; }
grep -qxF '  action: "document.delete"' "$T/h.out" || { echo "FAIL: altered entry not shown"; exit 1; }
# The entry and its leaf hash changed together: the path no longer leads to the root.
tamper "$I" "$T/t4" 'e = base64.b64decode(p["entry"]).replace(b"document.update", b"document.delete"); p["entry"] = base64.b64encode(e).decode(); p["leaf_hash"] = base64.b64encode(hashlib.sha256(b"\0" + e).digest()).decode()'
both "$T/t4" 1 path --key "$T/seal.key.pub"
tamper "$I" "$T/t5" 'p["leaf_index"] = 501'
both "$T/t5" 1 path --key "$T/seal.key.pub"
tamper "$I" "$T/t6" 'p["tree_size"] = 999'
both "$T/t6" 1 tree_size --key "$T/seal.key.pub"
# Another event's id on this entry.
tamper "$I" "$T/t7" 'p["event_id"] = "00000000-0000-7000-8000-0000000001f5"'
both "$T/t7" 1 entry --key "$T/seal.key.pub"
# The embedded key swapped for another key of the same name: the note is not
# signed by it (and with --key the swap is caught first).
tamper "$I" "$T/t8" 'p["key"] = open(sys.argv[1].rsplit("/", 2)[0] + "/other.key.pub").read().strip()'
both "$T/t8" 1 checkpoint
both "$T/t8" 1 key --key "$T/seal.key.pub"
# A verifier with the wrong key.
both "$I" 1 key --key "$T/other.key.pub"
# Consistency: altered path, swapped checkpoints, altered new checkpoint.
tamper "$C" "$T/c1" 'p["path"][0] = flip_b64(p["path"][0], 7)'
both "$T/c1" 1 path --key "$T/seal.key.pub"
tamper "$C" "$T/c2" 'p["old_checkpoint"], p["new_checkpoint"] = p["new_checkpoint"], p["old_checkpoint"]'
both "$T/c2" 1 path --key "$T/seal.key.pub"
tamper "$C" "$T/c3" 'p["new_checkpoint"] = p["new_checkpoint"].replace("\n1000\n", "\n1001\n")'
both "$T/c3" 1 new_checkpoint --key "$T/seal.key.pub"
# Not JSON any more (cut), and a duplicate field.
head -c 300 "$I" >"$T/t9"
both "$T/t9" 1 format --key "$T/seal.key.pub"
sed 's/^{/{"leaf_index":0,/' "$I" >"$T/t10"
both "$T/t10" 1 format --key "$T/seal.key.pub"
# Unreadable file and key: exit status 2 in both.
rc_c=0 rc_p=0
"$CTL" verify --proof "$T/nope" >/dev/null 2>&1 || rc_c=$?
"${VPY[@]}" proof "$T/nope" >/dev/null 2>&1 || rc_p=$?
assert_eq "2 2" "$rc_c $rc_p" "missing proof file: exit statuses"
rc_c=0 rc_p=0
"$CTL" verify --proof "$I" --key "$T/seal.key" >/dev/null 2>"$T/c.err" || rc_c=$?
"${VPY[@]}" proof "$I" --key "$T/seal.key" >/dev/null 2>/dev/null || rc_p=$?
assert_eq "2 2" "$rc_c $rc_p" "private key given as --key: exit statuses"
assert_eq "auditqctl verify: --key $T/seal.key: $T/seal.key holds a private (signing) key; give the verifier key $T/seal.key.pub instead" \
    "$(cat "$T/c.err")" "private key given as --key: message"
it_pass "every tampered proof is refused by both verifiers, naming the same check"

# ---- 4. checkpoint files (Python) and the documentation's example -------------
"${VPY[@]}" checkpoint "$T/p/ckpt-1000.checkpoint" --key "$T/seal.key.pub" --origin auditq >/dev/null
sed 's/^events 1000$/events 999/' "$T/p/ckpt-1000.checkpoint" >"$T/ck1"
rc=0
"${VPY[@]}" checkpoint "$T/ck1" --key "$T/seal.key.pub" >"$T/ck.out" 2>/dev/null || rc=$?
assert_eq 1 "$rc" "altered checkpoint file: exit status"
grep -q '^FAILED (checkpoint): bad signature: ' "$T/ck.out" || { cat "$T/ck.out"; echo "FAIL: altered checkpoint"; exit 1; }
rc=0
"${VPY[@]}" checkpoint "$T/p/ckpt-1000.checkpoint" --key "$T/other.key.pub" >"$T/ck.out" 2>/dev/null || rc=$?
assert_eq 1 "$rc" "checkpoint with another key of the same name: exit status"
grep -q '^FAILED (checkpoint): key mismatch: ' "$T/ck.out" || { cat "$T/ck.out"; echo "FAIL: key mismatch"; exit 1; }
# docs/INTEGRITY.md's example checkpoint and verifier key verify as printed.
"$PY" - "$AQ_ROOT/docs/INTEGRITY.md" "$T/doc.checkpoint" "$T/doc.pub" <<'PY'
import re, sys
doc = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"```\n(.*?)```", doc, re.S)
note = next(b for b in blocks if b.startswith("example.com/auditq\n1\n"))
key = next(l for b in blocks for l in b.splitlines() if l.startswith("example.com/auditq+"))
open(sys.argv[2], "w", encoding="utf-8").write(note)
open(sys.argv[3], "w").write(key + "\n")
PY
"${VPY[@]}" checkpoint "$T/doc.checkpoint" --key "$T/doc.pub" --origin example.com/auditq >"$T/ck.out"
assert_eq "verified: checkpoint of origin example.com/auditq, tree size 1, root ChmtF1QbIeGlvdT/487OMwYYSNOgj/AOADQKpvIMtLU=, signed by example.com/auditq (ce856398)" \
    "$(cat "$T/ck.out")" "the documentation's example checkpoint"
it_pass "checkpoint files: good, altered, another key; the documented example verifies"
