/* fileio.h -- durable-file helpers shared by libauditq (the spool) and the
 * programs (checkpoint keys and anchors, retention archives, the follow
 * cursor): one implementation of "make a rename or a new name durable".
 *
 * A file created or renamed into a directory survives a crash only once the
 * directory itself is fsynced (POSIX leaves the name in the page cache until
 * then), so every tmp-write-fsync-rename sequence in auditq ends with one of
 * these. */
#ifndef AQ_FILEIO_H
#define AQ_FILEIO_H

#include <stddef.h>

/* fsync of the directory dir. 0, or -1 with err = "fsync of directory DIR:
 * REASON" (err may be NULL). errno is kept from the failing call. */
int fileio_fsync_dir(const char *dir, char *err, size_t errlen);

/* fsync of the directory that holds path ("." for a bare name, "/" for a
 * name in the root). Same results as fileio_fsync_dir. */
int fileio_fsync_parent(const char *path, char *err, size_t errlen);

#endif
