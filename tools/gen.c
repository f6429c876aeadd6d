/* gen.c -- deterministic synthetic audit events (see gen.h for the mix).
 *
 * Everything here is driven by one xorshift64* stream per generator, so a
 * seed reproduces the same events on any machine. All tables are const;
 * the only mutable state is the gen struct the caller owns.
 *
 * JSON (changes, metadata) is built into fixed stack buffers sized for the
 * worst case the tables can produce (see GEN_JSON_MAX): the builder records
 * an overflow instead of truncating silently, and an overflowing document is
 * dropped rather than sent half-written.
 */
#include "gen.h"
#include "text.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define GEN_JSON_MAX 16384

#define N_TENANTS 50
#define N_USERS 4400
#define N_SERVICES 400
#define N_AI 150
#define N_SYSTEM 50            /* 5000 actors in all */

/* ---- PRNG ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void gen_init(gen *g, uint64_t seed)
{
    uint64_t x = seed;
    /* splitmix spreads neighbouring seeds (thread 0, 1, 2...) far apart and
     * never yields a state of 0, which xorshift could not leave. */
    do {
        g->state = splitmix64(&x);
    } while (g->state == 0);
    g->seq = 0;
    g->last_priority = -1;
}

uint64_t gen_u64(gen *g)
{
    uint64_t x = g->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, n); n > 0. The modulo bias is < n / 2^64: irrelevant here. */
static uint32_t rnd_below(gen *g, uint32_t n)
{
    return (uint32_t)(gen_u64(g) % n);
}

/* Uniform in [lo, hi]. */
static uint32_t rnd_range(gen *g, uint32_t lo, uint32_t hi)
{
    return lo + rnd_below(g, hi - lo + 1);
}

/* Uniform in [0, 1). */
static double rnd_unit(gen *g)
{
    return (double)(gen_u64(g) >> 11) * 0x1.0p-53;
}

/* True with probability pct percent (pct may be fractional). */
static int rnd_pct(gen *g, double pct)
{
    return rnd_unit(g) * 100.0 < pct;
}

/* Index drawn by integer weights. */
static size_t rnd_weighted(gen *g, const unsigned *w, size_t n)
{
    unsigned total = 0;
    for (size_t i = 0; i < n; i++)
        total += w[i];
    unsigned r = rnd_below(g, total);
    for (size_t i = 0; i < n; i++) {
        if (r < w[i])
            return i;
        r -= w[i];
    }
    return n - 1;
}

/* Zipf-like rank in [0, n): continuous inverse CDF of x^-s on [1, n+1].
 * Rank 0 is the most frequent; s = 1 gives the classic 1/k law, s < 1 a
 * flatter one. Cheap (one pow) and needs no table. */
static uint32_t rnd_zipf(gen *g, uint32_t n, double s)
{
    double u = rnd_unit(g), x;
    if (fabs(s - 1.0) < 1e-9) {
        x = exp(u * log((double)n + 1.0));
    } else {
        double a = 1.0 - s;
        x = pow(1.0 + u * (pow((double)n + 1.0, a) - 1.0), 1.0 / a);
    }
    uint32_t k = (uint32_t)x;
    k = k >= 1 ? k - 1 : 0;
    return k < n ? k : n - 1;
}

#define PICK(g, arr) ((arr)[rnd_below((g), (uint32_t)(sizeof(arr) / sizeof((arr)[0])))])

/* ---- bounded string builder ---------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len;
    size_t cap;        /* bytes available including the NUL */
    int overflow;      /* set once anything did not fit */
} sbuf;

static void sb_init(sbuf *b, char *mem, size_t cap)
{
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->overflow = 0;
    mem[0] = '\0';
}

static void sb_putn(sbuf *b, const char *s, size_t n)
{
    if (b->overflow || b->len + n + 1 > b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_putn(b, s, strlen(s));
}

static void sb_putc(sbuf *b, char c)
{
    sb_putn(b, &c, 1);
}

__attribute__((format(printf, 2, 3)))
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->overflow = 1;
        return;
    }
    sb_putn(b, tmp, (size_t)n);
}

static int sb_sink(void *ctx, const char *p, size_t n)
{
    sb_putn(ctx, p, n);
    return 0;
}

/* Appends s as a JSON string literal (text_json_string, common/text.h):
 * UTF-8 multi-byte text passes through, as real applications send it. */
static void sb_json_str(sbuf *b, const char *s)
{
    (void)text_json_string(sb_sink, b, s, strlen(s), 0);
}

static void sb_json_key(sbuf *b, int *first, const char *key)
{
    if (!*first)
        sb_putc(b, ',');
    *first = 0;
    sb_json_str(b, key);
    sb_putc(b, ':');
}

static const char ALNUM[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
static const char HEX[] = "0123456789abcdef";

static void sb_rand_chars(sbuf *b, gen *g, const char *alphabet, size_t alen, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_putc(b, alphabet[rnd_below(g, (uint32_t)alen)]);
}

static void sb_alnum(sbuf *b, gen *g, size_t n)
{
    sb_rand_chars(b, g, ALNUM, sizeof ALNUM - 1, n);
}

static void sb_hex(sbuf *b, gen *g, size_t n)
{
    sb_rand_chars(b, g, HEX, 16, n);
}

/* A random version-4-shaped UUID in text. */
static void sb_uuid(sbuf *b, gen *g)
{
    uint64_t hi = gen_u64(g), lo = gen_u64(g);
    sb_printf(b, "%08x-%04x-4%03x-%04x-%012llx",
              (unsigned)(hi >> 32), (unsigned)((hi >> 16) & 0xffff),
              (unsigned)(hi & 0xfff), (unsigned)(0x8000 | ((lo >> 48) & 0x3fff)),
              (unsigned long long)(lo & 0xffffffffffffull));
}

/* ---- tables ---------------------------------------------------------------- */

static const char *const TENANTS[N_TENANTS] = {
    "acme", "globex", "initech", "umbrella", "hooli", "stark-industries", "wayne-enterprises",
    "wonka", "tyrell", "cyberdyne", "soylent", "massive-dynamic", "aperture", "black-mesa",
    "oscorp", "vandelay", "dunder-mifflin", "pied-piper", "gringotts", "monarch",
    "nakatomi", "weyland-yutani", "virtucon", "zorg", "abstergo", "blue-sun", "buy-n-large",
    "cogswell", "spacely", "gekko-co", "prestige-worldwide", "sterling-cooper", "bluth-co",
    "los-pollos", "krusty-krab", "planet-express", "mom-corp", "ollivanders", "duff",
    "lacuna", "rekall", "omni-consumer", "encom", "yoyodyne", "tessier-ashpool",
    "veridian", "kwik-e-mart", "paper-street", "strickland", "contoso",
};

static const char *const SERVICES[] = {
    "billing", "search-indexer", "notifier", "importer", "sync-gateway", "scim-provisioner",
    "webhook-dispatcher", "backup", "analytics-etl", "crm-connector", "mobile-api",
    "public-api", "sso-bridge", "retention", "thumbnailer", "virus-scanner",
};
static const char *const SYSTEM_ACTORS[] = {
    "scheduler", "retention-job", "migrator", "license-check", "quota-enforcer",
    "session-reaper", "key-rotator", "backup-verifier", "gdpr-eraser", "health-monitor",
};
static const char *const AI_AGENTS[] = {
    "writing-assistant", "meeting-summarizer", "support-triage", "code-reviewer",
    "translation-bot", "data-analyst",
};

static const char *const BROWSER_UAS[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:122.0) Gecko/20100101 Firefox/122.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
};
/* Desktop and mobile apps: most user traffic in a SaaS product does not
 * come from a browser, and these are far shorter than browser UAs. */
static const char *const APP_UAS[] = {
    "AcmeApp/4.12.0 (iOS 17.2; iPhone15,2)", "AcmeApp/4.12.1 (Android 14; Pixel 8)",
    "AcmeDesktop/4.12.0 (Windows 10.0.22631)", "AcmeDesktop/4.11.3 (macOS 14.2)",
    "AcmeApp/4.10.0 (iPadOS 16.6)",
};
static const char *const SERVICE_UAS[] = {
    "curl/8.4.0", "python-requests/2.31.0", "Go-http-client/2.0", "okhttp/4.12.0",
    "acme-cli/2.7.1 (linux; amd64)", "terraform-provider-acme/1.9.0", "axios/1.6.2",
    "Apache-HttpClient/5.2.1 (Java/17.0.9)", "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
};
static const char *const AI_UAS[] = {
    "acme-ai-agent/0.9.3 (+https://acme.example/ai)", "langchain/0.1.4 python-httpx/0.26.0",
};

static const char *const APP_VERSIONS[] = { "3.2.1", "3.2.0", "3.1.9", "3.3.0-rc.1" };
static const char *const REGIONS[] = { "eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-northeast-1" };

static const char *const WORDS[] = {
    "quarterly", "roadmap", "review", "draft", "final", "onboarding", "guide", "team",
    "budget", "security", "policy", "incident", "postmortem", "release", "notes", "design",
    "spec", "meeting", "minutes", "customer", "feedback", "launch", "plan", "retro",
    "architecture", "overview", "hiring", "process", "sales", "forecast", "legal", "contract",
    "brand", "assets", "research", "interview", "summary", "backlog", "sprint", "goals",
    "pricing", "experiment", "migration", "checklist", "runbook", "oncall", "vendor", "audit",
    "compliance", "training", "handbook", "OKR", "Q3", "2024", "v2", "internal", "public",
};
/* Values that exercise escaping and UTF-8 end to end. */
static const char *const TRICKY[] = {
    "He said \"ship it\"",
    "tab\tseparated\tvalues",
    "line one\nline two\nline three",
    "C:\\Users\\admin\\Documents\\report.docx",
    "Gr\xc3\xbc\xc3\x9f" "e aus M\xc3\xbcnchen",                   /* Grüße aus München */
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x82\xbf\xe3\x82\xa4\xe3\x83\x88\xe3\x83\xab", /* 日本語のタイトル */
    "na\xc3\xafve caf\xc3\xa9 r\xc3\xa9sum\xc3\xa9",                /* naïve café résumé */
    "launch \xf0\x9f\x9a\x80 party \xf0\x9f\x8e\x89",              /* emoji */
    "<script>alert('x')</script>",
    "50% off -- \"limited\" \\ today only",
    "carriage\r\nreturn",
    "bell\x07 and form\x0c" "feed",
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80",  /* Привет мир */
    "\xd8\xa7\xd9\x84\xd8\xaa\xd9\x82\xd8\xb1\xd9\x8a\xd8\xb1 \xd8\xa7\xd9\x84\xd8\xb3\xd9\x86\xd9\x88\xd9\x8a", /* Arabic */
    "{\"looks\":\"like json\"}",
};

enum { ACT_USER = 1, ACT_SERVICE = 2, ACT_AI = 4, ACT_SYSTEM = 8, ACT_ANY = 15 };
static const char *const ACTOR_TYPE_NAMES[] = { "user", "service", "ai", "system" };
static const unsigned ACTOR_TYPE_WEIGHTS[] = { 80, 12, 6, 2 };

/* How a changed field's values look. */
enum vkind { V_WORDS, V_LONG, V_ENUM, V_BOOL, V_INT, V_EMAIL, V_URL, V_ARRAY, V_ID, V_TIME };

typedef struct field_def {
    const char *name;
    enum vkind kind;
    const char *const *choices;   /* V_ENUM */
    size_t nchoices;
} field_def;

static const char *const E_STATUS[] = { "draft", "in_review", "published", "archived" };
static const char *const E_VIS[] = { "private", "team", "workspace", "public" };
static const char *const E_ROLE[] = { "viewer", "commenter", "editor", "admin", "owner", "billing_admin", "auditor" };
static const char *const E_LOCALE[] = { "en-US", "en-GB", "de-DE", "fr-FR", "ja-JP", "pt-BR", "es-ES" };
static const char *const E_TZ[] = { "Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC", "Europe/London", "America/Los_Angeles" };
static const char *const E_USTATUS[] = { "invited", "active", "suspended", "deactivated" };
static const char *const E_THEME[] = { "light", "dark", "system" };
static const char *const E_PLAN[] = { "free", "team", "business", "enterprise" };
static const char *const E_PROVIDER[] = { "okta", "azure_ad", "google", "onelogin", "saml_generic" };
static const char *const E_MIME[] = { "application/pdf", "image/png", "text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "video/mp4" };
static const char *const E_SCOPE[] = { "pages:read", "pages:write", "users:read", "users:admin", "files:write", "audit:read", "billing:admin" };
static const char *const E_CURRENCY[] = { "EUR", "USD", "GBP", "JPY" };

#define ENUMF(n, arr) { n, V_ENUM, arr, sizeof(arr) / sizeof(arr[0]) }
#define PLAINF(n, k) { n, k, NULL, 0 }

static const field_def F_PAGE[] = {
    PLAINF("title", V_WORDS), PLAINF("body", V_LONG), ENUMF("status", E_STATUS),
    ENUMF("visibility", E_VIS), PLAINF("slug", V_WORDS), PLAINF("tags", V_ARRAY),
    PLAINF("parent_id", V_ID), ENUMF("locale", E_LOCALE), PLAINF("icon", V_WORDS),
};
static const field_def F_COMMENT[] = {
    PLAINF("body", V_LONG), PLAINF("resolved", V_BOOL), PLAINF("mentions", V_ARRAY),
};
static const field_def F_USER[] = {
    PLAINF("email", V_EMAIL), PLAINF("display_name", V_WORDS), ENUMF("role", E_ROLE),
    ENUMF("timezone", E_TZ), ENUMF("locale", E_LOCALE), ENUMF("status", E_USTATUS),
    PLAINF("mfa_enabled", V_BOOL), PLAINF("avatar_url", V_URL), PLAINF("title", V_WORDS),
};
static const field_def F_ACCESS[] = {
    ENUMF("role", E_ROLE), PLAINF("permissions", V_ARRAY), ENUMF("scope", E_SCOPE),
    PLAINF("expires_at", V_TIME), PLAINF("granted_by", V_ID),
};
static const field_def F_GROUP[] = {
    PLAINF("name", V_WORDS), PLAINF("description", V_LONG), PLAINF("members", V_ARRAY),
    PLAINF("member_count", V_INT),
};
static const field_def F_FILE[] = {
    PLAINF("name", V_WORDS), PLAINF("size", V_INT), ENUMF("mime_type", E_MIME),
    PLAINF("shared_with", V_ARRAY), PLAINF("description", V_LONG), PLAINF("folder_id", V_ID),
};
static const field_def F_KEY[] = {
    PLAINF("name", V_WORDS), PLAINF("scopes", V_ARRAY), PLAINF("expires_at", V_TIME),
    PLAINF("ip_allowlist", V_ARRAY),
};
static const field_def F_SETTINGS[] = {
    ENUMF("theme", E_THEME), PLAINF("retention_days", V_INT), PLAINF("sso_enforced", V_BOOL),
    PLAINF("ip_allowlist", V_ARRAY), ENUMF("default_role", E_ROLE), PLAINF("notifications", V_BOOL),
    PLAINF("session_timeout_min", V_INT), PLAINF("welcome_message", V_LONG),
    ENUMF("default_locale", E_LOCALE),
};
static const field_def F_WORKSPACE[] = {
    PLAINF("name", V_WORDS), ENUMF("plan", E_PLAN), PLAINF("domain", V_URL),
    ENUMF("default_locale", E_LOCALE), PLAINF("description", V_LONG),
};
static const field_def F_WEBHOOK[] = {
    PLAINF("url", V_URL), PLAINF("events", V_ARRAY), PLAINF("active", V_BOOL),
    PLAINF("secret_rotated_at", V_TIME),
};
static const field_def F_INTEGRATION[] = {
    PLAINF("scopes", V_ARRAY), PLAINF("channel", V_WORDS), PLAINF("enabled", V_BOOL),
};
static const field_def F_BILLING[] = {
    ENUMF("plan", E_PLAN), PLAINF("seats", V_INT), PLAINF("billing_email", V_EMAIL),
    ENUMF("currency", E_CURRENCY),
};
static const field_def F_SSO[] = {
    ENUMF("provider", E_PROVIDER), PLAINF("metadata_url", V_URL), PLAINF("enforce", V_BOOL),
    ENUMF("default_role", E_ROLE),
};

typedef struct field_set {
    const field_def *f;
    size_t n;
} field_set;
#define FSET(arr) { arr, sizeof(arr) / sizeof(arr[0]) }

/* Entity types: id shape and the fields an update may change. */
enum id_shape { ID_PREFIX_ALNUM, ID_UUID, ID_USER, ID_HEXKEY, ID_NAMED };

typedef struct entity_def {
    const char *type;
    enum id_shape shape;
    const char *prefix;      /* ID_PREFIX_ALNUM / ID_HEXKEY */
    field_set fields;
} entity_def;

static const char *const ROLE_NAMES[] = { "viewer", "editor", "admin", "owner", "billing_admin", "auditor", "guest" };
static const char *const INTEGRATION_NAMES[] = { "slack", "github", "jira", "salesforce", "google-drive", "zendesk", "teams" };

enum {
    E_PAGE, E_COMMENT, E_USERENT, E_ROLEENT, E_GROUP, E_FILE, E_APIKEY, E_EXPORT,
    E_IMPORT, E_SETTINGS, E_WORKSPACE, E_WEBHOOK, E_INTEGRATION, E_AIREQ, E_BILLING,
    E_SSO, E_REPORT, E_NONE
};
static const entity_def ENTITIES[] = {
    [E_PAGE]        = { "page", ID_PREFIX_ALNUM, "pg_", FSET(F_PAGE) },
    [E_COMMENT]     = { "comment", ID_PREFIX_ALNUM, "cmt_", FSET(F_COMMENT) },
    [E_USERENT]     = { "user", ID_USER, NULL, FSET(F_USER) },
    [E_ROLEENT]     = { "role", ID_NAMED, NULL, FSET(F_ACCESS) },
    [E_GROUP]       = { "group", ID_PREFIX_ALNUM, "grp_", FSET(F_GROUP) },
    [E_FILE]        = { "file", ID_UUID, NULL, FSET(F_FILE) },
    [E_APIKEY]      = { "api_key", ID_HEXKEY, "key_", FSET(F_KEY) },
    [E_EXPORT]      = { "export", ID_PREFIX_ALNUM, "exp_", FSET(F_SETTINGS) },
    [E_IMPORT]      = { "import", ID_PREFIX_ALNUM, "imp_", FSET(F_FILE) },
    [E_SETTINGS]    = { "workspace_settings", ID_PREFIX_ALNUM, "ws_", FSET(F_SETTINGS) },
    [E_WORKSPACE]   = { "workspace", ID_PREFIX_ALNUM, "ws_", FSET(F_WORKSPACE) },
    [E_WEBHOOK]     = { "webhook", ID_PREFIX_ALNUM, "wh_", FSET(F_WEBHOOK) },
    [E_INTEGRATION] = { "integration", ID_NAMED, NULL, FSET(F_INTEGRATION) },
    [E_AIREQ]       = { "ai_request", ID_HEXKEY, "air_", FSET(F_PAGE) },
    [E_BILLING]     = { "subscription", ID_PREFIX_ALNUM, "sub_", FSET(F_BILLING) },
    [E_SSO]         = { "sso_connection", ID_PREFIX_ALNUM, "sso_", FSET(F_SSO) },
    [E_REPORT]      = { "report", ID_UUID, NULL, FSET(F_GROUP) },
};

enum chg { CH_NONE, CH_UPDATE, CH_CREATE };
enum meta_kind { M_PLAIN, M_LOGIN, M_LOGIN_FAILED, M_AI, M_EXPORT, M_FILE, M_ACCESS };

typedef struct action_def {
    const char *name;
    int entity;           /* E_* */
    unsigned weight;      /* relative frequency */
    enum chg changes;
    int actors;           /* ACT_* mask of actor types that plausibly do it */
    enum meta_kind meta;
} action_def;

static const action_def ACTIONS[] = {
    { "page.view",              E_PAGE,       110, CH_NONE,   ACT_USER | ACT_AI,      M_PLAIN },
    { "page.update",            E_PAGE,       100, CH_UPDATE, ACT_USER | ACT_AI | ACT_SERVICE, M_PLAIN },
    { "page.create",            E_PAGE,        40, CH_CREATE, ACT_USER | ACT_AI | ACT_SERVICE, M_PLAIN },
    { "page.delete",            E_PAGE,        10, CH_NONE,   ACT_USER | ACT_SERVICE, M_PLAIN },
    { "page.restore",           E_PAGE,         3, CH_NONE,   ACT_USER,               M_PLAIN },
    { "page.publish",           E_PAGE,        12, CH_UPDATE, ACT_USER,               M_PLAIN },
    { "page.move",              E_PAGE,         8, CH_UPDATE, ACT_USER,               M_PLAIN },
    { "comment.create",         E_COMMENT,     35, CH_CREATE, ACT_USER | ACT_AI,      M_PLAIN },
    { "comment.delete",         E_COMMENT,      5, CH_NONE,   ACT_USER,               M_PLAIN },
    { "user.login",             E_USERENT,     70, CH_NONE,   ACT_USER,               M_LOGIN },
    { "user.logout",            E_USERENT,     30, CH_NONE,   ACT_USER,               M_LOGIN },
    { "user.login_failed",      E_USERENT,      8, CH_NONE,   ACT_USER,               M_LOGIN_FAILED },
    { "user.password_change",   E_USERENT,      4, CH_NONE,   ACT_USER,               M_PLAIN },
    { "user.mfa_enable",        E_USERENT,      2, CH_UPDATE, ACT_USER,               M_PLAIN },
    { "user.invite",            E_USERENT,      6, CH_CREATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "user.update",            E_USERENT,     15, CH_UPDATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "user.deactivate",        E_USERENT,      2, CH_UPDATE, ACT_USER | ACT_SERVICE | ACT_SYSTEM, M_PLAIN },
    { "role.grant",             E_ROLEENT,      6, CH_UPDATE, ACT_USER | ACT_SERVICE, M_ACCESS },
    { "role.revoke",            E_ROLEENT,      3, CH_UPDATE, ACT_USER | ACT_SERVICE, M_ACCESS },
    { "permission.change",      E_ROLEENT,      6, CH_UPDATE, ACT_USER,               M_ACCESS },
    { "group.member_add",       E_GROUP,        6, CH_UPDATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "group.member_remove",    E_GROUP,        3, CH_UPDATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "file.upload",            E_FILE,        30, CH_CREATE, ACT_USER | ACT_SERVICE, M_FILE },
    { "file.download",          E_FILE,        45, CH_NONE,   ACT_USER | ACT_SERVICE | ACT_AI, M_FILE },
    { "file.delete",            E_FILE,         5, CH_NONE,   ACT_USER | ACT_SYSTEM,  M_FILE },
    { "file.share",             E_FILE,        10, CH_UPDATE, ACT_USER,               M_FILE },
    { "api_key.create",         E_APIKEY,       3, CH_CREATE, ACT_USER,               M_PLAIN },
    { "api_key.revoke",         E_APIKEY,       2, CH_NONE,   ACT_USER | ACT_SYSTEM,  M_PLAIN },
    { "api_key.rotate",         E_APIKEY,       1, CH_NONE,   ACT_SYSTEM | ACT_SERVICE, M_PLAIN },
    { "export.run",             E_EXPORT,       6, CH_NONE,   ACT_USER | ACT_SERVICE | ACT_SYSTEM, M_EXPORT },
    { "import.run",             E_IMPORT,       3, CH_NONE,   ACT_USER | ACT_SERVICE, M_EXPORT },
    { "settings.update",        E_SETTINGS,    10, CH_UPDATE, ACT_USER | ACT_SYSTEM,  M_PLAIN },
    { "workspace.update",       E_WORKSPACE,    3, CH_UPDATE, ACT_USER,               M_PLAIN },
    { "webhook.create",         E_WEBHOOK,      2, CH_CREATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "webhook.update",         E_WEBHOOK,      2, CH_UPDATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "integration.connect",    E_INTEGRATION,  2, CH_NONE,   ACT_USER,               M_PLAIN },
    { "integration.disconnect", E_INTEGRATION,  1, CH_NONE,   ACT_USER | ACT_SYSTEM,  M_PLAIN },
    { "billing.plan_change",    E_BILLING,      1, CH_UPDATE, ACT_USER | ACT_SERVICE, M_PLAIN },
    { "sso.config_update",      E_SSO,          1, CH_UPDATE, ACT_USER,               M_PLAIN },
    { "report.generate",        E_REPORT,       5, CH_NONE,   ACT_USER | ACT_SYSTEM | ACT_AI, M_EXPORT },
    { "audit.export",           E_EXPORT,       2, CH_NONE,   ACT_USER | ACT_SYSTEM,  M_EXPORT },
    { "ai.completion",          E_AIREQ,       45, CH_NONE,   ACT_USER | ACT_AI | ACT_SERVICE, M_AI },
    { "ai.summarize",           E_AIREQ,       15, CH_NONE,   ACT_USER | ACT_AI,      M_AI },
    { "ai.embedding",           E_AIREQ,       10, CH_NONE,   ACT_AI | ACT_SERVICE | ACT_SYSTEM, M_AI },
    { "ai.tool_call",           E_AIREQ,        8, CH_NONE,   ACT_AI,                 M_AI },
    { "system.retention_purge", E_SETTINGS,     2, CH_NONE,   ACT_SYSTEM,             M_EXPORT },
    { "system.backup",          E_WORKSPACE,    2, CH_NONE,   ACT_SYSTEM | ACT_SERVICE, M_PLAIN },
};
#define N_ACTIONS (sizeof ACTIONS / sizeof ACTIONS[0])

static const unsigned PRIORITY_WEIGHTS[] = { 2, 10, 78, 10 }; /* critical, high, normal, low */
static const unsigned NFIELDS_WEIGHTS[] = { 45, 25, 13, 8, 5, 4 }; /* 1..6 fields changed */

/* ---- value builders ------------------------------------------------------ */

static void sb_words(sbuf *b, gen *g, uint32_t lo, uint32_t hi)
{
    uint32_t n = rnd_range(g, lo, hi);
    for (uint32_t i = 0; i < n; i++) {
        if (i)
            sb_putc(b, ' ');
        sb_puts(b, PICK(g, WORDS));
    }
}

/* Plain text of a changed value (escaped later). 15% are TRICKY strings so
 * every run exercises escaping and multi-byte UTF-8. */
static void text_value(sbuf *b, gen *g, enum vkind kind)
{
    if (rnd_pct(g, 15)) {
        sb_puts(b, PICK(g, TRICKY));
        if (kind != V_LONG)
            return;
        sb_putc(b, ' ');
    }
    if (kind == V_LONG) {
        /* Bodies drive the size tail: most are a sentence or two, a few
         * are paragraphs. */
        uint32_t hi = rnd_pct(g, 8) ? 120 : 14;
        sb_words(b, g, 3, hi);
        if (rnd_pct(g, 15)) {
            sb_puts(b, "\n\n");
            sb_words(b, g, 3, 20);
        }
    } else {
        sb_words(b, g, 1, 4);
    }
}

/* Appends one JSON value for field f. For enums and booleans `avoid` (if
 * >= 0) is a choice the value must differ from, so an update's old and new
 * values differ; returns the choice made (-1 for other kinds). */
static int json_value(sbuf *b, gen *g, const field_def *f, int avoid)
{
    int choice = -1;
    char tmp[4096];
    sbuf t;

    switch (f->kind) {
    case V_WORDS:
    case V_LONG:
        sb_init(&t, tmp, sizeof tmp);
        text_value(&t, g, f->kind);
        if (t.overflow)       /* cannot happen with these tables; keep it valid anyway */
            sb_puts(b, "\"\"");
        else
            sb_json_str(b, tmp);
        break;
    case V_ENUM:
        if (avoid >= 0 && f->nchoices > 1) {
            choice = (int)rnd_below(g, (uint32_t)f->nchoices - 1);
            if (choice >= avoid)
                choice++;
        } else {
            choice = (int)rnd_below(g, (uint32_t)f->nchoices);
        }
        sb_json_str(b, f->choices[choice]);
        break;
    case V_BOOL:
        choice = avoid >= 0 ? !avoid : (int)rnd_below(g, 2);
        sb_puts(b, choice ? "true" : "false");
        break;
    case V_INT:
        sb_printf(b, "%u", rnd_below(g, 100000));
        break;
    case V_EMAIL:
        sb_printf(b, "\"%s.%s%u@%s.example\"", PICK(g, WORDS), PICK(g, WORDS),
                  rnd_below(g, 100), PICK(g, TENANTS));
        break;
    case V_URL:
        sb_printf(b, "\"https://%s.example/%s/", PICK(g, TENANTS), PICK(g, WORDS));
        sb_alnum(b, g, 10);
        sb_putc(b, '"');
        break;
    case V_ARRAY: {
        uint32_t n = rnd_below(g, 5);
        sb_putc(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                sb_putc(b, ',');
            sb_json_str(b, PICK(g, WORDS));
        }
        sb_putc(b, ']');
        break;
    }
    case V_ID:
        sb_puts(b, "\"pg_");
        sb_alnum(b, g, 10);
        sb_putc(b, '"');
        break;
    case V_TIME:
        sb_printf(b, "\"2024-%02u-%02uT%02u:%02u:%02uZ\"", rnd_range(g, 1, 12),
                  rnd_range(g, 1, 28), rnd_below(g, 24), rnd_below(g, 60), rnd_below(g, 60));
        break;
    }
    return choice;
}

/* {"field":[old,new],...} with 1..6 distinct fields of the entity. */
static void build_changes(sbuf *b, gen *g, const action_def *a)
{
    const field_set *fs = &ENTITIES[a->entity].fields;
    size_t want = 1 + rnd_weighted(g, NFIELDS_WEIGHTS, 6);
    if (want > fs->n)
        want = fs->n;
    /* Partial Fisher-Yates over field indexes picks distinct fields. */
    size_t idx[16];
    for (size_t i = 0; i < fs->n; i++)
        idx[i] = i;
    int first = 1;
    sb_putc(b, '{');
    for (size_t i = 0; i < want; i++) {
        size_t j = i + rnd_below(g, (uint32_t)(fs->n - i));
        size_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
        const field_def *f = &fs->f[idx[i]];
        sb_json_key(b, &first, f->name);
        sb_putc(b, '[');
        int old = -1;
        if (a->changes == CH_CREATE)
            sb_puts(b, "null");
        else
            old = json_value(b, g, f, -1);
        sb_putc(b, ',');
        json_value(b, g, f, old);
        sb_putc(b, ']');
    }
    sb_putc(b, '}');
}

static const char *const AI_MODELS[] = { "gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3.1-70b", "mistral-large" };
static const char *const AI_TOOLS[] = { "search", "calculator", "calendar", "code_interpreter", "page_reader", "translator" };
static const char *const FAIL_CODES[] = { "E_TIMEOUT", "E_CONFLICT", "E_QUOTA", "E_UPSTREAM", "E_VALIDATION" };
static const char *const FAIL_MSGS[] = {
    "upstream timed out after 30s", "version conflict: page was modified by another user",
    "storage quota exceeded", "bad gateway from object store", "field \"title\" must not be empty",
};
static const char *const LOGIN_FAIL[] = { "bad_password", "mfa_failed", "account_locked", "unknown_user", "sso_assertion_expired" };
static const char *const LOGIN_METHODS[] = { "password", "sso", "passkey", "magic_link", "oauth_google" };
static const char *const FORMATS[] = { "csv", "json", "xlsx", "pdf", "parquet" };
static const char *const OSES[] = { "macOS", "Windows", "Linux", "iOS", "Android" };
static const char *const FLAGS[] = { "new_editor", "beta_search", "ai_assist", "dark_launch_sync", "fast_export" };

static void build_metadata(sbuf *b, gen *g, const action_def *a, int actor_type, const char *outcome)
{
    int first = 1;
    sb_putc(b, '{');
    sb_json_key(b, &first, "app_version");
    sb_json_str(b, PICK(g, APP_VERSIONS));
    sb_json_key(b, &first, "region");
    sb_json_str(b, PICK(g, REGIONS));
    /* Tracing is sampled, as in most deployments: 60% carry a trace. */
    if (rnd_pct(g, 60)) {
        sb_json_key(b, &first, "trace_id");
        sb_putc(b, '"');
        sb_hex(b, g, 32);
        sb_putc(b, '"');
        if (rnd_pct(g, 15)) {
            sb_json_key(b, &first, "span_id");
            sb_putc(b, '"');
            sb_hex(b, g, 16);
            sb_putc(b, '"');
        }
    }

    switch (a->meta) {
    case M_LOGIN:
        sb_json_key(b, &first, "method");
        sb_json_str(b, PICK(g, LOGIN_METHODS));
        sb_json_key(b, &first, "mfa");
        sb_puts(b, rnd_pct(g, 60) ? "true" : "false");
        break;
    case M_LOGIN_FAILED:
        sb_json_key(b, &first, "reason");
        sb_json_str(b, PICK(g, LOGIN_FAIL));
        sb_json_key(b, &first, "attempt");
        sb_printf(b, "%u", rnd_range(g, 1, 6));
        break;
    case M_AI:
        sb_json_key(b, &first, "model");
        sb_json_str(b, PICK(g, AI_MODELS));
        sb_json_key(b, &first, "tokens");
        sb_printf(b, "{\"prompt\":%u,\"completion\":%u}", rnd_range(g, 20, 8000), rnd_range(g, 1, 2000));
        sb_json_key(b, &first, "latency_ms");
        sb_printf(b, "%u", rnd_range(g, 150, 12000));
        if (rnd_pct(g, 40)) {
            uint32_t n = rnd_range(g, 1, 3);
            sb_json_key(b, &first, "tools");
            sb_putc(b, '[');
            for (uint32_t i = 0; i < n; i++) {
                if (i)
                    sb_putc(b, ',');
                sb_json_str(b, PICK(g, AI_TOOLS));
            }
            sb_putc(b, ']');
        }
        break;
    case M_EXPORT:
        sb_json_key(b, &first, "format");
        sb_json_str(b, PICK(g, FORMATS));
        sb_json_key(b, &first, "rows");
        sb_printf(b, "%u", rnd_below(g, 2000000));
        sb_json_key(b, &first, "filters");
        sb_printf(b, "{\"from\":\"2024-%02u-01\",\"to\":\"2024-%02u-28\",\"types\":[\"%s\",\"%s\"]}",
                  rnd_range(g, 1, 6), rnd_range(g, 7, 12), PICK(g, WORDS), PICK(g, WORDS));
        break;
    case M_FILE:
        sb_json_key(b, &first, "bytes");
        sb_printf(b, "%u", rnd_below(g, 50000000));
        sb_json_key(b, &first, "sha256");
        sb_putc(b, '"');
        sb_hex(b, g, 64);
        sb_putc(b, '"');
        break;
    case M_ACCESS:
        sb_json_key(b, &first, "approved_by");
        sb_printf(b, "\"usr_%05u\"", rnd_below(g, N_USERS));
        sb_json_key(b, &first, "ticket");
        sb_printf(b, "\"SEC-%u\"", rnd_range(g, 1000, 9999));
        break;
    case M_PLAIN:
        break;
    }

    if (actor_type == 0 && rnd_pct(g, 12)) {
        sb_json_key(b, &first, "client");
        sb_printf(b, "{\"os\":\"%s\",\"screen\":[%u,%u],\"dnt\":%s}", PICK(g, OSES),
                  rnd_range(g, 800, 3840), rnd_range(g, 600, 2160), rnd_below(g, 2) ? "true" : "false");
    }
    if (rnd_pct(g, 15)) {
        uint32_t n = rnd_range(g, 1, 3);
        sb_json_key(b, &first, "feature_flags");
        sb_putc(b, '[');
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                sb_putc(b, ',');
            sb_json_str(b, PICK(g, FLAGS));
        }
        sb_putc(b, ']');
    }
    if (strcmp(outcome, "failure") == 0 && a->meta != M_LOGIN_FAILED) {
        size_t k = rnd_below(g, (uint32_t)(sizeof FAIL_CODES / sizeof FAIL_CODES[0]));
        sb_json_key(b, &first, "error");
        sb_puts(b, "{\"code\":");
        sb_json_str(b, FAIL_CODES[k]);
        sb_puts(b, ",\"message\":");
        sb_json_str(b, FAIL_MSGS[k]);
        sb_putc(b, '}');
    } else if (strcmp(outcome, "denied") == 0) {
        sb_json_key(b, &first, "required_permission");
        sb_json_str(b, PICK(g, E_SCOPE));
    }
    if (rnd_pct(g, 3)) {
        sb_json_key(b, &first, "note");
        sb_json_str(b, PICK(g, TRICKY));
    }
    sb_putc(b, '}');
}

/* ---- the event ----------------------------------------------------------- */

/* Setters must succeed: a generated event that the library refuses is a bug
 * in this file, and a benchmark that silently sends fewer fields would lie. */
static void check(auditq_rc rc)
{
    assert(rc == AUDITQ_OK);
    (void)rc;
}

static void set_text(auditq_event *ev, auditq_field f, const sbuf *b)
{
    assert(!b->overflow);
    if (!b->overflow)
        check(auditq_event_setn(ev, f, b->p, b->len));
}

static void set_json(auditq_event *ev, auditq_field f, const sbuf *b)
{
    assert(!b->overflow);
    if (!b->overflow)
        check(auditq_event_set_json(ev, f, b->p));
}

static void build_ip(sbuf *b, gen *g)
{
    if (rnd_pct(g, 15)) {
        /* IPv6: documentation prefix or a realistic global unicast one,
         * sometimes compressed. */
        if (rnd_below(g, 2))
            sb_printf(b, "2001:db8:%x:%x::%x", rnd_below(g, 0x10000), rnd_below(g, 0x10000),
                      rnd_range(g, 1, 0xffff));
        else
            sb_printf(b, "2a02:%x:%x:%x:%x:%x:%x:%x", rnd_below(g, 0x10000), rnd_below(g, 0x10000),
                      rnd_below(g, 0x10000), rnd_below(g, 0x10000), rnd_below(g, 0x10000),
                      rnd_below(g, 0x10000), rnd_below(g, 0x10000));
        return;
    }
    uint32_t r = rnd_below(g, 100);
    if (r < 25) {
        sb_printf(b, "10.%u.%u.%u", rnd_below(g, 256), rnd_below(g, 256), rnd_range(g, 1, 254));
    } else if (r < 35) {
        sb_printf(b, "192.168.%u.%u", rnd_below(g, 256), rnd_range(g, 1, 254));
    } else {
        uint32_t a;
        do {
            a = rnd_range(g, 1, 223);
        } while (a == 10 || a == 127 || a == 192);
        sb_printf(b, "%u.%u.%u.%u", a, rnd_below(g, 256), rnd_below(g, 256), rnd_range(g, 1, 254));
    }
}

static void build_actor(sbuf *b, gen *g, int actor_type)
{
    switch (actor_type) {
    case 0:
        sb_printf(b, "usr_%05u", rnd_zipf(g, N_USERS, 0.7));
        break;
    case 1: {
        uint32_t k = rnd_zipf(g, N_SERVICES, 0.9);
        sb_printf(b, "svc-%s-%u", SERVICES[k % (sizeof SERVICES / sizeof SERVICES[0])],
                  k / (uint32_t)(sizeof SERVICES / sizeof SERVICES[0]));
        break;
    }
    case 2: {
        uint32_t k = rnd_zipf(g, N_AI, 0.9);
        sb_printf(b, "ai-%s-%u", AI_AGENTS[k % (sizeof AI_AGENTS / sizeof AI_AGENTS[0])],
                  k / (uint32_t)(sizeof AI_AGENTS / sizeof AI_AGENTS[0]));
        break;
    }
    default: {
        uint32_t k = rnd_below(g, N_SYSTEM);
        sb_printf(b, "system:%s-%u", SYSTEM_ACTORS[k % (sizeof SYSTEM_ACTORS / sizeof SYSTEM_ACTORS[0])],
                  k / (uint32_t)(sizeof SYSTEM_ACTORS / sizeof SYSTEM_ACTORS[0]));
        break;
    }
    }
}

static void build_entity_id(sbuf *b, gen *g, const entity_def *e, const char *actor, int self)
{
    switch (e->shape) {
    case ID_PREFIX_ALNUM:
        sb_puts(b, e->prefix);
        sb_alnum(b, g, 12);
        break;
    case ID_UUID:
        sb_uuid(b, g);
        break;
    case ID_USER:
        if (self)
            sb_puts(b, actor);
        else
            sb_printf(b, "usr_%05u", rnd_below(g, N_USERS));
        break;
    case ID_HEXKEY:
        sb_puts(b, e->prefix);
        sb_hex(b, g, 24);
        break;
    case ID_NAMED:
        if (strcmp(e->type, "integration") == 0)
            sb_puts(b, PICK(g, INTEGRATION_NAMES));
        else
            sb_puts(b, PICK(g, ROLE_NAMES));
        break;
    }
}

void gen_fill(gen *g, auditq_event *ev)
{
    char actor[64], ent[96], ip[64], rid[48], sid[48];
    char changes[GEN_JSON_MAX], meta[GEN_JSON_MAX];
    sbuf b_actor, b_ent, b_ip, b_rid, b_sid, b_changes, b_meta;

    auditq_event_reset(ev);
    g->seq++;

    int prio = (int)rnd_weighted(g, PRIORITY_WEIGHTS, 4);
    g->last_priority = prio;
    check(auditq_event_set_priority(ev, (auditq_priority)prio));

    /* Actor type first, so its mix is exact; then an action that kind of
     * actor plausibly performs (rejection sampling over the weights). */
    int at = (int)rnd_weighted(g, ACTOR_TYPE_WEIGHTS, 4);
    unsigned aw[N_ACTIONS];
    for (size_t i = 0; i < N_ACTIONS; i++)
        aw[i] = (ACTIONS[i].actors & (1 << at)) ? ACTIONS[i].weight : 0;
    const action_def *a = &ACTIONS[rnd_weighted(g, aw, N_ACTIONS)];

    check(auditq_event_set(ev, AUDITQ_ACTION, a->name));
    check(auditq_event_set(ev, AUDITQ_TENANT_ID, TENANTS[rnd_zipf(g, N_TENANTS, 1.0)]));
    check(auditq_event_set(ev, AUDITQ_ACTOR_TYPE, ACTOR_TYPE_NAMES[at]));

    sb_init(&b_actor, actor, sizeof actor);
    build_actor(&b_actor, g, at);
    set_text(ev, AUDITQ_ACTOR_ID, &b_actor);

    const entity_def *e = &ENTITIES[a->entity];
    int self = strncmp(a->name, "user.log", 8) == 0 || strcmp(a->name, "user.password_change") == 0 ||
               strcmp(a->name, "user.mfa_enable") == 0;
    check(auditq_event_set(ev, AUDITQ_ENTITY_TYPE, e->type));
    sb_init(&b_ent, ent, sizeof ent);
    build_entity_id(&b_ent, g, e, actor, self);
    set_text(ev, AUDITQ_ENTITY_ID, &b_ent);

    const char *outcome;
    if (strcmp(a->name, "user.login_failed") == 0) {
        outcome = "failure";
    } else {
        uint32_t r = rnd_below(g, 100);
        outcome = r < 93 ? "success" : r < 98 ? "failure" : "denied";
    }
    check(auditq_event_set(ev, AUDITQ_OUTCOME, outcome));

    /* System jobs run in-process: no client address, agent, request or
     * session. */
    if (at != 3) {
        sb_init(&b_ip, ip, sizeof ip);
        build_ip(&b_ip, g);
        set_text(ev, AUDITQ_SOURCE_IP, &b_ip);
        const char *ua = at == 1 ? PICK(g, SERVICE_UAS) : at == 2 ? PICK(g, AI_UAS)
                       : rnd_pct(g, 50) ? PICK(g, BROWSER_UAS) : PICK(g, APP_UAS);
        check(auditq_event_set(ev, AUDITQ_USER_AGENT, ua));
    }

    /* Background jobs have no request; everything else does. */
    if (at != 3) {
        sb_init(&b_rid, rid, sizeof rid);
        sb_uuid(&b_rid, g);
        set_text(ev, AUDITQ_REQUEST_ID, &b_rid);
    }

    if (at == 0 || (at == 2 && rnd_pct(g, 50))) {
        sb_init(&b_sid, sid, sizeof sid);
        sb_puts(&b_sid, "sess_");
        sb_alnum(&b_sid, g, 16);
        set_text(ev, AUDITQ_SESSION_ID, &b_sid);
    }

    if (a->changes != CH_NONE) {
        sb_init(&b_changes, changes, sizeof changes);
        build_changes(&b_changes, g, a);
        set_json(ev, AUDITQ_CHANGES, &b_changes);
    }

    sb_init(&b_meta, meta, sizeof meta);
    build_metadata(&b_meta, g, a, at, outcome);
    set_json(ev, AUDITQ_METADATA, &b_meta);
}

int gen_last_priority(const gen *g)
{
    return g->last_priority;
}
