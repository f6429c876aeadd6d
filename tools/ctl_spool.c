/* ctl_spool.c -- `auditqctl spool replay FILE [--dry-run]` and
 * `auditqctl spool inspect FILE [--records]`: a producer spool left behind
 * by a process that will not come back, replayed into Redis by hand, or
 * looked into.
 *
 * Replay is the library's replay loop (common/spool_replay.c: spool_read_chunk,
 * spool_push_chunk; spool_set_pos in spool_file.c) run to the end of the file: chunks of
 * REPLAY_CHUNK records, the position in FILE.pos written (and fsync'ed)
 * after each chunk Redis acknowledged, so a rerun or a run after a crash
 * pushes at most one chunk again (the worker stores such duplicates once).
 * It takes the spool's flock, so it refuses a spool whose producer is still
 * alive (that producer replays it itself) and two replays never race.
 * FILE itself is never modified: bad records stay for inspection, and a
 * producer that opens FILE later finds the position at the end and cuts the
 * file back.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

#include "clock.h"
#include "codec.h"
#include "ctl.h"
#include "ctl_common.h"
#include "spool.h"
#include "uuid7.h"

#define REPLAY_CHUNK 1000
#define REPLAY_CHUNK_BYTES (8u << 20)
#define PROGRESS_EVERY_US 2000000

const char ctl_spool_synopsis[] =
    "spool replay|inspect FILE [--json]  replay or show a dead producer's spool";
const char ctl_spool_help[] =
    "Usage: auditqctl [OPTIONS] spool replay FILE [--dry-run] [--min-replicas N] [--json]\n"
    "       auditqctl [OPTIONS] spool inspect FILE [--records] [--json]\n"
    "\n"
    "A producer with spool_path set writes the events Redis cannot take to a\n"
    "local spool file and replays them itself, in order, once Redis answers\n"
    "(also after a restart with the same spool_path). These commands are for a\n"
    "spool left behind by a process that will not come back, and for looking\n"
    "inside one.\n"
    "\n"
    "replay FILE   pushes every good record after the replay position onto its\n"
    "              priority queue, in file order, in pipelined chunks of 1000,\n"
    "              into the namespace recorded in FILE (the namespace setting is\n"
    "              not used). After each chunk Redis acknowledged, the position\n"
    "              is saved in FILE.pos, so a rerun (or a run after a crash)\n"
    "              continues where the last one stopped; at most one chunk is\n"
    "              pushed twice, and the worker stores such duplicates once. A\n"
    "              torn or corrupt record is reported on stderr with its offset\n"
    "              and skipped, never replayed; the good records around it are.\n"
    "              Refuses a spool a running producer holds (it replays its\n"
    "              own). FILE itself is not changed. Progress goes to stderr\n"
    "              every 2 s on long runs.\n"
    "  --dry-run   read and check FILE and say what would be replayed; no Redis,\n"
    "              no FILE.pos\n"
    "  --min-replicas N\n"
    "              after each chunk, WAIT until N replicas have it (within half\n"
    "              of redis_timeout_ms) before saving the position past it, as the\n"
    "              producer does with redis_min_replicas; too few: stop with\n"
    "              the chunk kept for the next run (default 0: no WAIT)\n"
    "inspect FILE  reads all of FILE and shows its namespace, size, replay\n"
    "              position, the records replayed (before the position) and\n"
    "              waiting (per priority), and every torn or corrupt record with\n"
    "              its offset. Takes no lock: safe on a live producer's spool.\n"
    "  --records   also one line per record: offset, bytes, priority, state\n"
    "              (replayed | waiting), event_id, occurred_at (UTC), action\n"
    "  --json      one JSON object instead of the text (bad records are still\n"
    "              named on stderr). replay: {\"file\", \"namespace\", \"dry_run\",\n"
    "              \"from_offset\", \"size\", \"complete\" (false when Redis failed part\n"
    "              way), \"replayed\" (--dry-run: \"would_replay\"): {\"records\",\n"
    "              \"bytes\", \"critical\", \"high\", \"normal\", \"low\"}, \"bad\",\n"
    "              \"bad_bytes\"}. inspect: {\"file\", \"namespace\", \"spool_id\",\n"
    "              \"size\", \"position\", \"position_saved\", \"locked\", \"replayed\"\n"
    "              and \"waiting\" (as above), \"bad\": [{\"kind\", \"offset\", \"bytes\",\n"
    "              \"why\", \"before_position\"}], with --records \"records\":\n"
    "              [{\"offset\", \"bytes\", \"priority\", \"state\", \"event_id\",\n"
    "              \"occurred_at\", \"action\" (or \"error\")}]}\n"
    "  -h, --help  show this help\n"
    "\n"
    "Settings used by replay: redis_url, redis_connect_timeout_ms,\n"
    "redis_timeout_ms.\n"
    "\n"
    "Exit status: 0 every record was good (and, for replay, is in Redis); 1 a\n"
    "torn or corrupt record was found (every good record was still replayed),\n"
    "or FILE is unusable or locked, or Redis failed (run it again: it continues\n"
    "from the saved position); 2 usage error.\n";

typedef struct tally {
    uint64_t records, bytes;
    uint64_t per_prio[AQ_PRIORITIES];
    uint64_t bad, bad_bytes;
} tally;

static const char *pl(uint64_t n)
{
    return n == 1 ? "" : "s";
}

static void report_bad(const char *cmd, const char *path, const spool_rec *r, spool_status kind)
{
    fprintf(stderr, "auditqctl spool %s: %s: %s record at offset %" PRIu64 " (%" PRIu64 " bytes): %s; not replayed\n",
            cmd, path, kind == SPOOL_TORN ? "torn" : "corrupt", r->off, r->end - r->off, r->why);
}

static void print_prios(const tally *t)
{
    printf("(critical %" PRIu64 ", high %" PRIu64 ", normal %" PRIu64 ", low %" PRIu64 ")", t->per_prio[0],
           t->per_prio[1], t->per_prio[2], t->per_prio[3]);
}

static void print_bad_summary(const tally *t, const char *path)
{
    if (t->bad)
        printf("%" PRIu64 " bad record%s skipped (%" PRIu64 " bytes), listed on stderr; %s keeps them: "
               "'auditqctl spool inspect %s' shows them again\n",
               t->bad, t->bad == 1 ? "" : "s", t->bad_bytes, path, path);
}

/* One record for inspect --records --json, into js:
 * {"offset", "bytes", "priority", "state", then "event_id", "occurred_at",
 * "action" or, for a job that does not decode, "error"}. */
static void json_record(FILE *js, int first, const spool_rec *r, int replayed)
{
    aq_job j;
    char err[200], id[AUDITQ_ID_SIZE], when[40];

    fprintf(js, "%s{\"offset\": %" PRIu64 ", \"bytes\": %u, \"priority\": \"%s\", \"state\": \"%s\"",
            first ? "" : ", ", r->off, r->len, codec_priority_name(r->prio), replayed ? "replayed" : "waiting");
    if (codec_decode(r->data, r->len, SPOOL_MAX_PAYLOAD, &j, err, sizeof err) != 0) {
        fputs(", \"error\": ", js);
        ctl_json_str(js, err, strlen(err));
    } else {
        uuid_format(j.id, id);
        ctl_fmt_iso(when, sizeof when, j.occurred_at_us / 1000, 1);
        fprintf(js, ", \"event_id\": \"%s\", \"occurred_at\": \"%s\", \"action\": ", id, when);
        ctl_json_str(js, j.f[AUDITQ_ACTION].p, j.f[AUDITQ_ACTION].len);
    }
    fputc('}', js);
}

/* A tally as a JSON object: records, bytes and the per-priority counts. */
static void json_tally(const tally *t)
{
    printf("{\"records\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"critical\": %" PRIu64 ", \"high\": %" PRIu64
           ", \"normal\": %" PRIu64 ", \"low\": %" PRIu64 "}", t->records, t->bytes, t->per_prio[0],
           t->per_prio[1], t->per_prio[2], t->per_prio[3]);
}

/* One line per record for inspect --records. */
static void print_record(const spool_rec *r, int replayed)
{
    aq_job j;
    char err[200], id[AUDITQ_ID_SIZE], when[40];
    printf("%12" PRIu64 " %7u %-8s %-8s ", r->off, r->len, codec_priority_name(r->prio),
           replayed ? "replayed" : "waiting");
    if (codec_decode(r->data, r->len, SPOOL_MAX_PAYLOAD, &j, err, sizeof err) != 0) {
        printf("undecodable job: ");
        ctl_put_text(stdout, err, strlen(err), 120);
        putchar('\n');
        return;
    }
    uuid_format(j.id, id);
    ctl_fmt_iso(when, sizeof when, j.occurred_at_us / 1000, 1);
    printf("%s %s ", id, when);
    ctl_put_text(stdout, j.f[AUDITQ_ACTION].p, j.f[AUDITQ_ACTION].len, 60);
    putchar('\n');
}

/* Reads the whole file, from the first record: what was replayed (before
 * the position), what waits, and every bad region wherever it is. */
static int spool_inspect(const char *path, int records, int json)
{
    char err[1200];
    char *rbuf = NULL, *bbuf = NULL;   /* --json: the "records" and "bad" items */
    size_t rlen = 0, blen = 0, nrec = 0, nbad = 0;
    FILE *rjs = NULL, *bjs = NULL;
    spool_open_info info;
    tally waiting, done;
    spool_reader r = {0};
    spool_rec rec;
    spool_status st;
    int rc = CTL_OK;

    memset(&waiting, 0, sizeof waiting);
    memset(&done, 0, sizeof done);
    spool *s = spool_open(path, NULL, SPOOL_OPEN_READONLY, &info, NULL, err, sizeof err);
    if (!s) {
        fprintf(stderr, "auditqctl spool inspect: %s\n", err);
        return CTL_FAILED;
    }
    /* Held by someone? A shared lock attempt answers without waiting. */
    int held = flock(spool_fd(s), LOCK_SH | LOCK_NB) != 0;
    if (!held)
        flock(spool_fd(s), LOCK_UN);
    uint64_t pos = spool_pos(s);
    if (json) {
        rjs = open_memstream(&rbuf, &rlen);
        bjs = open_memstream(&bbuf, &blen);
        if (rjs == NULL || bjs == NULL) {
            fprintf(stderr, "auditqctl spool inspect: out of memory\n");
            rc = CTL_FAILED;
            goto out;
        }
    }
    if (!json) {
        printf("file:       %s\n", path);
        printf("namespace:  %s\n", spool_hdr(s)->ns);
        printf("spool id:   %016" PRIx64 "\n", spool_hdr(s)->id);
        printf("size:       %" PRIu64 " bytes\n", spool_size(s));
        if (info.pos_found)
            printf("position:   %" PRIu64 " (from %s%s)\n", pos, path, SPOOL_POS_SUFFIX);
        else
            printf("position:   %d (no position for this file in %s%s: from the first record)\n", SPOOL_HEADER_SIZE,
                   path, SPOOL_POS_SUFFIX);
        printf("locked:     %s\n", held ? "yes (a running producer or replay holds it)" : "no");
        if (records)
            printf("%12s %7s %-8s %-8s %-36s %-24s %s\n", "offset", "bytes", "priority", "state", "event_id",
                   "occurred_at", "action");
    }
    spool_reader_fd(&r, spool_fd(s), SPOOL_HEADER_SIZE, spool_size(s));
    while ((st = spool_reader_next(&r, &rec)) != SPOOL_END) {
        if (st == SPOOL_IOERR) {
            fprintf(stderr, "auditqctl spool inspect: %s: %s\n", path, rec.why);
            rc = CTL_FAILED;
            break;
        }
        tally *t = rec.off < pos ? &done : &waiting;
        if (st == SPOOL_RECORD) {
            t->records++;
            t->bytes += rec.len;
            t->per_prio[rec.prio]++;
            if (records && json)
                json_record(rjs, nrec++ == 0, &rec, rec.off < pos);
            else if (records)
                print_record(&rec, rec.off < pos);
            continue;
        }
        t->bad++;
        if (json) {
            fprintf(bjs, "%s{\"kind\": \"%s\", \"offset\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"why\": ",
                    nbad++ ? ", " : "", st == SPOOL_TORN ? "torn" : "corrupt", rec.off, rec.end - rec.off);
            ctl_json_str(bjs, rec.why, strlen(rec.why));
            fprintf(bjs, ", \"before_position\": %s}", rec.off < pos ? "true" : "false");
        } else {
            printf("bad:        %s record at offset %" PRIu64 " (%" PRIu64 " bytes): %s%s\n",
                   st == SPOOL_TORN ? "torn" : "corrupt", rec.off, rec.end - rec.off, rec.why,
                   rec.off < pos ? " (before the position: already skipped by a replay)" : "");
        }
        rc = CTL_FAILED;
    }
    spool_reader_free(&r);
    if (json) {
        fclose(rjs);
        fclose(bjs);
        rjs = bjs = NULL;
        printf("{\"file\": ");
        ctl_json_str(stdout, path, strlen(path));
        printf(", \"namespace\": \"%s\", \"spool_id\": \"%016" PRIx64 "\", \"size\": %" PRIu64
               ", \"position\": %" PRIu64 ", \"position_saved\": %s, \"locked\": %s, \"replayed\": ",
               spool_hdr(s)->ns, spool_hdr(s)->id, spool_size(s), info.pos_found ? pos : (uint64_t)SPOOL_HEADER_SIZE,
               info.pos_found ? "true" : "false", held ? "true" : "false");
        json_tally(&done);
        printf(", \"waiting\": ");
        json_tally(&waiting);
        printf(", \"bad\": [%s]", bbuf ? bbuf : "");
        if (records)
            printf(", \"records\": [%s]", rbuf ? rbuf : "");
        printf("}\n");
        goto out;
    }
    printf("replayed:   %" PRIu64 " record%s, %" PRIu64 " bytes of jobs, before the position\n", done.records,
           pl(done.records), done.bytes);
    printf("waiting:    %" PRIu64 " record%s, %" PRIu64 " bytes of jobs ", waiting.records, pl(waiting.records),
           waiting.bytes);
    print_prios(&waiting);
    putchar('\n');
out:
    if (rjs)
        fclose(rjs);
    if (bjs)
        fclose(bjs);
    free(rbuf);
    free(bbuf);
    spool_close(s);
    return rc;
}

static int spool_replay(const aq_config *cfg, const char *path, int dry_run, int min_replicas, int json)
{
    char err[1200], why[600];
    spool_open_info info;
    spool_chunk ch;
    tally t;
    aq_keys k;
    redisContext *c = NULL;
    int locked = 0, rc = CTL_OK;
    const char *cmd = "replay";

    memset(&ch, 0, sizeof ch);
    memset(&t, 0, sizeof t);
    spool *s = spool_open(path, NULL, dry_run ? SPOOL_OPEN_READONLY : 0, &info, &locked, err, sizeof err);
    if (!s) {
        if (locked)
            fprintf(stderr, "auditqctl spool replay: %s is locked by a running producer (or another replay); "
                            "a producer replays its own spool once Redis answers: stop it first to replay "
                            "by hand\n", path);
        else
            fprintf(stderr, "auditqctl spool replay: %s\n", err);
        return CTL_FAILED;
    }
    keys_init(&k, spool_hdr(s)->ns); /* validated by spool_open */
    uint64_t waiting = spool_pending(s), from = spool_pos(s);
    if (!json) {
        printf("spool %s: namespace %s, %" PRIu64 " record%s to replay from offset %" PRIu64 " of %" PRIu64
               " bytes\n", path, spool_hdr(s)->ns, waiting, pl(waiting), spool_pos(s), spool_size(s));
        fflush(stdout);
    }
    if (!dry_run && spool_pos(s) < spool_size(s)) {
        c = ctl_redis_connect(cfg, err, sizeof err);
        if (!c) {
            fprintf(stderr, "auditqctl spool replay: %s; check redis_url (AUDITQ_REDIS_URL) and that Redis is "
                            "running\n", err);
            spool_close(s);
            return CTL_FAILED;
        }
    }
    int64_t t0 = clock_mono_us(), last_progress = t0;
    uint64_t pos = spool_pos(s), size = spool_size(s);
    /* WAIT's own limit within the connection's command timeout, as the
     * producer's (half of it). */
    int wait_ms = cfg->redis_timeout_ms / 2 > 0 ? cfg->redis_timeout_ms / 2 : 1;
    while (pos < size) {
        if (spool_read_chunk(spool_fd(s), pos, size, REPLAY_CHUNK, REPLAY_CHUNK_BYTES, &ch, err, sizeof err) != 0) {
            fprintf(stderr, "auditqctl spool %s: %s: %s\n", cmd, path, err);
            rc = CTL_FAILED;
            break;
        }
        if (!dry_run) {
            int broken = 0;
            if (spool_push_chunk(c, &k, &ch, min_replicas, wait_ms, &broken, why, sizeof why) != 0) {
                fprintf(stderr, "auditqctl spool replay: Redis failed after %" PRIu64 " records: %s; the position "
                                "is saved: run the same command again to continue\n",
                        t.records, ctl_redis_why("LPUSH", why, err, sizeof err));
                rc = CTL_FAILED;
                break;
            }
            if (spool_set_pos(s, ch.end, ch.n, 0, 1, err, sizeof err) != 0) {
                fprintf(stderr, "auditqctl spool replay: %s; the last chunk will be pushed again by the next run\n",
                        err);
                rc = CTL_FAILED;
                break;
            }
        }
        pos = ch.end; /* a dry run advances only here: FILE.pos is not written */
        t.records += ch.n;
        t.bytes += ch.bytes;
        for (size_t i = 0; i < ch.n; i++)
            t.per_prio[ch.items[i].prio]++;
        if (ch.bad_kind != SPOOL_RECORD) {
            report_bad(cmd, path, &ch.bad, ch.bad_kind);
            t.bad++;
            t.bad_bytes += ch.bad.end - ch.bad.off;
        }
        int64_t now = clock_mono_us();
        if (now - last_progress >= PROGRESS_EVERY_US && pos < size) {
            last_progress = now;
            fprintf(stderr, "auditqctl spool %s: %" PRIu64 " of %" PRIu64 " records, offset %" PRIu64
                            " of %" PRIu64 " (%.0f%%), %.1f s\n",
                    cmd, t.records, waiting, pos, size, 100.0 * (double)pos / (double)size,
                    (double)(now - t0) / 1e6);
        }
    }
    if (json) {
        /* Printed also when Redis failed part way: "complete" says so, and
         * the counts are what reached Redis (the position is saved). */
        printf("{\"file\": ");
        ctl_json_str(stdout, path, strlen(path));
        printf(", \"namespace\": \"%s\", \"dry_run\": %s, \"from_offset\": %" PRIu64 ", \"size\": %" PRIu64
               ", \"complete\": %s, \"%s\": ", spool_hdr(s)->ns, dry_run ? "true" : "false", from, size,
               pos >= size ? "true" : "false", dry_run ? "would_replay" : "replayed");
        json_tally(&t);
        printf(", \"bad\": %" PRIu64 ", \"bad_bytes\": %" PRIu64 "}\n", t.bad, t.bad_bytes);
    } else {
        printf("%s %" PRIu64 " record%s (%" PRIu64 " bytes) into {%s}:queue:* ", dry_run ? "would replay" : "replayed",
               t.records, pl(t.records), t.bytes, spool_hdr(s)->ns);
        print_prios(&t);
        printf("%s\n", dry_run ? "; dry run: nothing sent, position unchanged" : "");
        print_bad_summary(&t, path);
    }
    if (t.bad && rc == CTL_OK)
        rc = CTL_FAILED;
    spool_chunk_free(&ch);
    if (c)
        redisFree(c);
    spool_close(s);
    return rc;
}

int ctl_spool(const aq_config *cfg, int argc, char **argv)
{
    static const struct option opts[] = {
        {"dry-run", no_argument, NULL, 'n'},
        {"min-replicas", required_argument, NULL, 'm'},
        {"records", no_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    int dry_run = 0, records = 0, json = 0, min_replicas = 0, o;

    if (argc < 2) {
        fprintf(stderr, "auditqctl spool: say what to do: replay FILE or inspect FILE; see 'auditqctl spool --help'\n");
        return CTL_USAGE;
    }
    const char *sub = argv[1];
    int is_replay = strcmp(sub, "replay") == 0, is_inspect = strcmp(sub, "inspect") == 0;
    if (!is_replay && !is_inspect) {
        fprintf(stderr, "auditqctl spool: unknown subcommand '%s'; use replay or inspect (see 'auditqctl spool "
                        "--help')\n", sub);
        return CTL_USAGE;
    }
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
        if (o == 'n' && is_replay) {
            dry_run = 1;
        } else if (o == 'm' && is_replay) {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 0 || n > 16) {
                fprintf(stderr, "auditqctl spool replay: --min-replicas %s: give a number of replicas from 0 to "
                                "16\n", optarg);
                return CTL_USAGE;
            }
            min_replicas = (int)n;
        } else if (o == 'r' && is_inspect) {
            records = 1;
        } else if (o == 'j') {
            json = 1;
        } else {
            fprintf(stderr, "auditqctl spool %s: unknown option '%s'; see 'auditqctl spool --help'\n", sub,
                    argv[optind]);
            return CTL_USAGE;
        }
    }
    if (optind + 1 != argc - 1) {
        fprintf(stderr, "auditqctl spool %s: %s; see 'auditqctl spool --help'\n", sub,
                optind + 1 > argc - 1 ? "name the spool FILE" : "only one FILE at a time");
        return CTL_USAGE;
    }
    const char *path = argv[optind + 1];
    return is_replay ? spool_replay(cfg, path, dry_run, min_replicas, json) : spool_inspect(path, records, json);
}
