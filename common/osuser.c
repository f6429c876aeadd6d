/* osuser.c -- the effective user's name (osuser.h). */
#include "osuser.h"

#include <pwd.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

void osuser_name(char *out, size_t cap)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    uid_t uid = geteuid();

    if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL && pw.pw_name[0])
        snprintf(out, cap, "%s", pw.pw_name);
    else
        snprintf(out, cap, "uid:%ld", (long)uid);
}
