/* entry.h -- the canonical entries the Merkle tree's leaves are made of.
 * docs/INTEGRITY.md ("The canonical form") is the reference; the SQL
 * encoder of the evidence trigger (sql/) must produce the same bytes.
 *
 * An entry is a type byte followed by fields, each a 4-byte big-endian
 * length and that many bytes, or the 4 bytes FF FF FF FF for SQL NULL:
 *
 *   0x01  event, version 1: the 18 columns of a stored audit_events row in
 *         the order of entry_event_fields[] below, as text:
 *           event_id      lowercase 36-character UUID text
 *           occurred_at,  decimal ASCII of the integer microseconds since
 *           received_at   1970-01-01T00:00:00Z ("-" for negative), what
 *                         (extract(epoch from ts) * 1000000)::bigint gives
 *           priority ..   the text as stored (UTF-8)
 *           changes,      PostgreSQL's jsonb::text output (normalised by
 *           metadata      PostgreSQL: a verifier needs only the rows)
 *           clock_flag    NULL, 'future' or 'backfill'
 *   0x02  retention record: the same framing; its fields are defined with
 *         the retention evidence in docs/INTEGRITY.md.
 *
 * Pure functions, no allocation, never print to a stream except
 * entry_print. Safe on any input bytes.
 */
#ifndef AQ_ENTRY_H
#define AQ_ENTRY_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "merkle.h"

#define ENTRY_TYPE_EVENT 0x01
#define ENTRY_TYPE_RETENTION 0x02
#define ENTRY_EVENT_NFIELDS 18
#define ENTRY_NULL_LEN 0xFFFFFFFFu
/* The largest field length the framing can carry (0xFFFFFFFF means NULL). */
#define ENTRY_FIELD_MAX 0xFFFFFFFEu
/* Fields an entry of any type may have at most (the decoder's bound). */
#define ENTRY_MAX_FIELDS 32

/* The column names of an event entry, in entry order:
 * event_id, occurred_at, received_at, priority, tenant_id, actor_id,
 * actor_type, action, entity_type, entity_id, outcome, source_ip,
 * user_agent, request_id, session_id, changes, metadata, clock_flag. */
extern const char *const entry_event_fields[ENTRY_EVENT_NFIELDS];

/* A comma-separated SQL select list producing the 18 field texts of an
 * audit_events row in entry order, with the timestamps already as integer
 * microseconds text and the jsonb columns as ::text, e.g. for
 * "SELECT <list> FROM audit_events ...". NULLs stay NULL. */
extern const char entry_event_select_sql[];

/* Encodes an event entry from the texts of the 18 columns in entry order:
 * vals[i] == NULL is SQL NULL, else vals[i][0 .. lens[i]) (libpq: vals[i]
 * = PQgetisnull ? NULL : PQgetvalue, lens[i] = PQgetlength). Writes into
 * out (cap bytes) only when cap is enough. Returns the entry's length
 * (1 + 18 * 4 + the field bytes) whether or not it was written, so a
 * caller may size its buffer with cap = 0; returns 0 if a field is longer
 * than ENTRY_FIELD_MAX. */
size_t entry_event_encode(const char *const vals[ENTRY_EVENT_NFIELDS],
                          const size_t lens[ENTRY_EVENT_NFIELDS], unsigned char *out, size_t cap);

/* The leaf hash of the event entry of these columns, hashed as it is
 * framed, without building the entry in memory (the verifier's hot path).
 * Returns 0, or -1 if a field is longer than ENTRY_FIELD_MAX. */
int entry_event_leaf_hash(const char *const vals[ENTRY_EVENT_NFIELDS],
                          const size_t lens[ENTRY_EVENT_NFIELDS], merkle_hash out);

/* Decimal text of integer microseconds since the epoch, as the event
 * entry carries occurred_at and received_at (out: at least 21 bytes).
 * Returns the length. */
size_t entry_format_us(int64_t us, char *out, size_t cap);

/* A decoded entry: pointers into the decoded bytes, valid while they are. */
typedef struct entry_view {
    unsigned type;                      /* the first byte */
    unsigned nfields;
    struct {
        const unsigned char *p;         /* NULL: SQL NULL */
        size_t len;
    } f[ENTRY_MAX_FIELDS];
} entry_view;

/* Splits an entry into its type and fields. An event entry (0x01) must
 * have exactly 18 fields; other types any number up to ENTRY_MAX_FIELDS.
 * Returns 0, or -1 with the reason in err ("entry is empty", "field 3
 * (received_at) runs past the end: length 20 at offset 45, 10 bytes left",
 * "event entry has 17 fields, version 1 has 18", ...). */
int entry_decode(const void *p, size_t len, entry_view *v, char *err, size_t errlen);

/* The name of field i of an entry of this type ("event_id" for type 1;
 * "field3" style names for types this build does not know). Returns a
 * static string, or one written into buf (n bytes). */
const char *entry_field_name(unsigned type, unsigned i, char *buf, size_t n);

/* Prints a decoded entry for a person, one "  name: value" line per field
 * (text in double quotes, NULL as a bare NULL, bytes that are not
 * printable UTF-8 escaped as \xNN; at most 300 bytes of a field), or
 * with json != 0 as one JSON object {"type":1,"event_id":"...",...} (NULL
 * as null; invalid UTF-8 replaced by U+FFFD) and no newline after it, so it
 * can be embedded in a larger object. */
void entry_print(FILE *out, const entry_view *v, int json);
#endif
