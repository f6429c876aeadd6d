/* fileio.c -- durable-file helpers (contract in fileio.h). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "text.h"

int fileio_fsync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (err != NULL)
            text_errf(err, errlen, "fsync of directory %s: %s", dir, strerror(e));
        if (fd >= 0)
            close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

int fileio_fsync_parent(const char *path, char *err, size_t errlen)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    return fileio_fsync_dir(dir, err, errlen);
}
