/* osuser.h -- who runs this process, as a self-audit event names its actor
 * (auditqctl's tools/selfaudit.c, the worker's worker/selfevents.c). */
#ifndef AQ_OSUSER_H
#define AQ_OSUSER_H
#include <stddef.h>

/* The effective user's name into out (cap bytes, NUL-terminated), "uid:N"
 * when the user has no name. The effective user is who acts: getlogin
 * would name the terminal's owner, wrong under sudo, su or systemd. */
void osuser_name(char *out, size_t cap);
#endif
