/* Atomic file replacement for writers that stream into a FILE* (core/atomic_file.h).
 * The rules are kiln_safetensors_save's (core/safetensors.c keeps its own copy for
 * now; this one is shaped so that it can move onto this file). */
#include "atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TMP_INFIX ".tmp."
/* A temporary file this much older than its last write is no live writer's. */
#define STALE_TMP_SECONDS 60
#define MAX_LINKS 40

/* path with every symbolic link at its last component followed (a relative link from
 * its own directory; a dangling one names the file to create). malloc'd, or NULL and errno. */
static char *resolve_target(const char *path) {
    char *cur = strdup(path);
    for (int hops = 0; cur; hops++) {
        struct stat st;
        if (lstat(cur, &st) != 0 || !S_ISLNK(st.st_mode)) return cur;
        char link[PATH_MAX];
        ssize_t k = hops < MAX_LINKS ? readlink(cur, link, sizeof link - 1) : (errno = ELOOP, -1);
        if (k <= 0 || k == (ssize_t)sizeof link - 1) {
            int e = k == 0 ? ENOENT : k > 0 ? ENAMETOOLONG : errno;
            free(cur);
            errno = e;
            return NULL;
        }
        link[k] = '\0';
        const char *slash = strrchr(cur, '/');
        size_t dirlen = link[0] == '/' || !slash ? 0 : (size_t)(slash - cur) + 1;
        char *next = malloc(dirlen + (size_t)k + 1);
        if (next) {
            memcpy(next, cur, dirlen);
            memcpy(next + dirlen, link, (size_t)k + 1);
        }
        free(cur);
        cur = next;
    }
    errno = ENOMEM;
    return NULL;
}

/* The new file gets the replaced one's permission bits and, where allowed, owner and
 * group (best effort); a file new to path gets 0644. */
static void keep_mode(int fd, const char *target) {
    struct stat st;
    if (stat(target, &st) != 0 || !S_ISREG(st.st_mode)) {
        fchmod(fd, 0644);
        return;
    }
    struct stat mine;
    if (fstat(fd, &mine) == 0 && (mine.st_uid != st.st_uid || mine.st_gid != st.st_gid) &&
        fchown(fd, st.st_uid, st.st_gid) != 0 && mine.st_gid != st.st_gid)
        (void)!fchown(fd, (uid_t)-1, st.st_gid);
    fchmod(fd, st.st_mode & 07777); /* after fchown, which may clear set-id bits */
}

static bool tmp_suffix(const char *s) {
    for (int k = 0; k < 6; k++)
        if (!((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9')))
            return false;
    return s[6] == '\0';
}

/* Removes temporaries a killed writer of target left: "<base>.tmp." plus 6 letters or
 * digits, regular, this user's, unmodified for STALE_TMP_SECONDS and not flock'ed (a
 * live writer holds the lock until its rename; the kernel drops it when the writer
 * dies). Best effort: errors are ignored. */
static void remove_stale_temps(const char *target) {
    const char *slash = strrchr(target, '/'), *base = slash ? slash + 1 : target;
    if (!base[0]) return;
    char *dir = slash ? strndup(target, slash == target ? 1 : (size_t)(slash - target)) : strdup(".");
    int dfd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    free(dir);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0) close(dfd);
        return;
    }
    size_t bl = strlen(base), il = strlen(TMP_INFIX);
    time_t now = time(NULL);
    uid_t me = geteuid();
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (strncmp(name, base, bl) || strncmp(name + bl, TMP_INFIX, il) || !tmp_suffix(name + bl + il)) continue;
        struct stat st, now_st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) || st.st_uid != me ||
            !(now - st.st_mtime >= STALE_TMP_SECONDS))
            continue;
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0) continue;
        if (fstat(fd, &now_st) == 0 && now_st.st_ino == st.st_ino && now_st.st_dev == st.st_dev &&
            flock(fd, LOCK_EX | LOCK_NB) == 0 && fstatat(dfd, name, &now_st, AT_SYMLINK_NOFOLLOW) == 0 &&
            now_st.st_ino == st.st_ino && now_st.st_dev == st.st_dev)
            unlinkat(dfd, name, 0);
        close(fd);
    }
    closedir(d);
}

static void finish(kiln__atomic_file *a) {
    if (a->lockfd >= 0) close(a->lockfd);
    free(a->tmp);
    free(a->target);
    *a = (kiln__atomic_file){NULL, NULL, NULL, -1};
}

kiln_status kiln__atomic_begin(kiln__atomic_file *a, const char *op, const char *path) {
    *a = (kiln__atomic_file){NULL, NULL, NULL, -1};
    a->target = resolve_target(path);
    if (!a->target) {
        int err = errno;
        return err == ENOMEM ? kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op)
                             : kiln__error(KILN_STATUS_IO, "%s: cannot follow the symbolic link '%s': %s; nothing "
                                           "written", op, path, strerror(err));
    }
    remove_stale_temps(a->target);
    size_t plen = strlen(a->target);
    a->tmp = malloc(plen + 16);
    if (!a->tmp) {
        finish(a);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    }
    snprintf(a->tmp, plen + 16, "%s" TMP_INFIX "XXXXXX", a->target);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int err = errno;
        kiln__error(KILN_STATUS_IO, "%s: cannot create a temporary file beside '%s': %s; nothing written", op,
                    a->target, strerror(err));
        finish(a);
        return KILN_STATUS_IO;
    }
    /* Held until the rename (through a duplicate, as fclose comes first): the lock
     * tells another writer's clean-up that this file's writer is alive. */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) a->lockfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    keep_mode(fd, a->target);
    if (!(a->f = fdopen(fd, "wb"))) {
        int err = errno;
        close(fd);
        unlink(a->tmp);
        kiln__error(KILN_STATUS_IO, "%s: cannot open a temporary file beside '%s': %s; nothing written", op,
                    a->target, strerror(err));
        finish(a);
        return KILN_STATUS_IO;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__atomic_commit(kiln__atomic_file *a, const char *op) {
    const char *stage = "write";
    FILE *f = a->f;
    a->f = NULL;
    errno = 0;
    if (fflush(f) != 0) goto fail;
    stage = "fsync";
    if (fsync(fileno(f)) != 0) goto fail;
    stage = "close";
    FILE *f2 = f;
    f = NULL;
    if (fclose(f2) != 0) goto fail;
    stage = "rename the temporary file over";
    if (rename(a->tmp, a->target) != 0) goto fail;
    /* Make the rename itself durable: fsync the directory (best effort). */
    char *dir = strdup(a->target), *slash = dir ? strrchr(dir, '/') : NULL;
    if (dir) {
        const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    finish(a);
    return KILN_STATUS_OK;
fail:;
    int err = errno ? errno : EIO;
    if (f) fclose(f);
    unlink(a->tmp);
    kiln__error(KILN_STATUS_IO, "%s: cannot %s '%s': %s; the previous file, if any, is untouched", op, stage,
                a->target, strerror(err));
    finish(a);
    return KILN_STATUS_IO;
}

void kiln__atomic_abort(kiln__atomic_file *a) {
    if (a->f) fclose(a->f);
    if (a->tmp && a->target) unlink(a->tmp);
    finish(a);
}
