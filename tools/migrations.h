/* migrations.h -- the SQL migrations compiled into auditqctl.
 *
 * build/gen/migrations.c is generated from sql/NNN_name.sql by
 * scripts/embed-sql.sh: one entry per file, sorted by version, versions
 * unique. Embedding them means the binary that runs `migrate` carries
 * exactly the schema it was built and tested against; there is no
 * share/ directory to find or to get out of step. */
#ifndef AQ_MIGRATIONS_H
#define AQ_MIGRATIONS_H
#include <stddef.h>

typedef struct aq_migration {
    int version;         /* NNN from the file name, >= 1 */
    const char *name;    /* the file name's "name" part, without ".sql" */
    const char *sql;     /* the whole file, NUL-terminated; static storage */
} aq_migration;

extern const aq_migration aq_migrations[];
extern const size_t aq_migrations_count;
#endif
