/* kiln_safetensors_save around the file it replaces: temporary files left by a save
 * that was killed are cleaned up on the next save of the same target (and nothing
 * else is: other names, fresh files, files a live writer holds, links, directories);
 * the replaced file keeps its permission bits; a symbolic link is written through,
 * its target replaced in place and the link kept. */
#include "support/kiln_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(checkpoint_save, .init = kiln_test_setup, .fini = kiln_test_teardown);

static bool exists(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0;
}

static void touch(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot create %s", path);
    fputs(text, f);
    fclose(f);
}

/* Sets a file's (or, not following it, a link's) modification time seconds ago. */
static void age(const char *path, int seconds) {
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= seconds;
    t[1] = t[0];
    cr_assert_eq(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s", path);
}

/* Names in the test directory (or dir) that contain needle. */
static int count(const char *dir, const char *needle) {
    DIR *d = opendir(dir ? dir : kt_scratch_dir());
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static void save_values(const char *path, float a, float b) {
    kiln_named_tensor t[] = {{"w", KT_F32(1, KT_SHAPE(2), {a, b})}};
    cr_assert_eq(kiln_safetensors_save(path, t, 1, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
}

static void expect_values(const char *path, float a, float b) {
    kiln_tensor *w = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_safetensors_load(path, &(kiln_named_tensor){"w", w}, 1, true), KILN_STATUS_OK, "%s: %s", path,
                 kiln_last_error());
    KT_EXPECT(w, 0, 0, {a, b});
}

/* A child process that is killed (SIGXFSZ, the file size limit) in the middle of a
 * save of path leaves its temporary file behind. */
static void killed_save(const char *path) {
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        struct rlimit lim = {4096, 4096};
        signal(SIGXFSZ, SIG_DFL);
        setrlimit(RLIMIT_FSIZE, &lim);
        static float zeros[1 << 16]; /* no ops in the forked child (OpenMP's pool is not forked) */
        kiln_named_tensor big[] = {{"w", kiln_tensor_from_host(zeros, 1, (int64_t[]){1 << 16}, KILN_F32, KILN_CPU)}};
        kiln_safetensors_save(path, big, 1, NULL, 0);
        _exit(0); /* not reached: the write past 4096 bytes kills the process */
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGXFSZ, "the child was not killed mid-save (status %d)",
              status);
}

KT_TEST(checkpoint_save, a_killed_saves_temporary_file_is_removed_by_the_next_save) {
    char path[200], p[200];
    kt_scratch_path(path, sizeof path, "model.safetensors");
    save_values(path, 1, 2);
    killed_save(path);
    killed_save(path);
    cr_assert_eq(count(NULL, "model.safetensors.tmp."), 2, "the killed saves left their temporary files");
    expect_values(path, 1, 2); /* the old file is intact */

    /* within the first minute a temporary file may be a live writer's that has not
     * locked it yet: kept */
    save_values(path, 3, 4);
    cr_expect_eq(count(NULL, "model.safetensors.tmp."), 2, "fresh temporary files are kept");
    DIR *d = opendir(kt_scratch_dir());
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) age(kt_scratch_path(p, sizeof p, e->d_name), 120);
    closedir(d);
    save_values(path, 5, 6);
    cr_expect_eq(count(NULL, ".tmp."), 0, "the stale temporary files were removed");
    expect_values(path, 5, 6);
    kt_scratch_remove();
}

KT_TEST(checkpoint_save, only_stale_unlocked_temporary_files_of_the_same_target_are_removed) {
    char path[200], p[200], other[200];
    kt_scratch_path(path, sizeof path, "m.safetensors");
    kt_scratch_path(other, sizeof other, "elsewhere.bin");
    touch(other, "not kiln's");
    const char *stale[] = {"m.safetensors.tmp.abcDEF", "m.safetensors.tmp.000000", "m.safetensors.tmp.Zz9aA1"};
    const char *kept[] = {
        "m.safetensors.tmp.abcDE",   /* 5 characters */
        "m.safetensors.tmp.abcDEFG", /* 7 */
        "m.safetensors.tmp.abc-EF",  /* not mkstemp's alphabet */
        "m.safetensors.tmp.abcDEF~", "m.safetensors.tmpXabcDEF", "xm.safetensors.tmp.abcDEF",
        "m.safetensor.tmp.abcDEF",   "n.safetensors.tmp.abcDEF", "m.safetensors.TMP.abcDEF",
    };
    for (int i = 0; i < 3; i++) {
        touch(kt_scratch_path(p, sizeof p, stale[i]), "stale");
        age(p, 3600);
    }
    for (int i = 0; i < 9; i++) {
        touch(kt_scratch_path(p, sizeof p, kept[i]), "other");
        age(p, 3600);
    }
    /* right name, but: fresh; locked by a live writer; a directory; a link */
    touch(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.FRESH1"), "fresh");
    touch(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.LOCKED"), "locked");
    age(p, 3600);
    int lockfd = open(p, O_RDONLY);
    cr_assert(lockfd >= 0 && flock(lockfd, LOCK_EX) == 0);
    cr_assert_eq(mkdir(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.DIRDIR"), 0755), 0);
    age(p, 3600);
    cr_assert_eq(symlink(other, kt_scratch_path(p, sizeof p, "m.safetensors.tmp.LINKED")), 0);
    age(p, 3600);

    save_values(path, 7, 8);
    for (int i = 0; i < 3; i++) cr_expect(!exists(kt_scratch_path(p, sizeof p, stale[i])), "%s was not removed", stale[i]);
    for (int i = 0; i < 9; i++) cr_expect(exists(kt_scratch_path(p, sizeof p, kept[i])), "%s was removed", kept[i]);
    cr_expect(exists(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.FRESH1")), "a fresh temporary file was removed");
    cr_expect(exists(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.LOCKED")), "a live writer's temporary file was removed");
    cr_expect(exists(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.DIRDIR")), "a directory was removed");
    cr_expect(exists(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.LINKED")) && exists(other), "a link or its target was removed");
    expect_values(path, 7, 8);
    /* once its writer is gone (the lock dropped) the old file is stale */
    close(lockfd);
    save_values(path, 9, 10);
    cr_expect(!exists(kt_scratch_path(p, sizeof p, "m.safetensors.tmp.LOCKED")), "an abandoned temporary file was kept");
    kt_scratch_remove();
}

KT_TEST(checkpoint_save, the_replaced_file_keeps_its_mode) {
    char path[200], fresh[200];
    kt_scratch_path(path, sizeof path, "m.safetensors");
    save_values(path, 1, 2);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0644, "a new file is 0644 (mode %o)", st.st_mode & 07777);
    const mode_t modes[] = {0600, 0640, 0755, 0444};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(chmod(path, modes[i]), 0);
        save_values(path, (float)i, 2);
        cr_assert_eq(stat(path, &st), 0);
        cr_expect_eq(st.st_mode & 07777, modes[i], "mode %o became %o", modes[i], st.st_mode & 07777);
        expect_values(path, (float)i, 2);
    }
    save_values(kt_scratch_path(fresh, sizeof fresh, "new.safetensors"), 1, 1);
    cr_assert_eq(stat(fresh, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0644);
    kt_scratch_remove();
}

KT_TEST(checkpoint_save, a_symbolic_link_is_written_through) {
    char real_dir[200], link_dir[200], real[300], link[300], link2[300], p[300];
    kt_scratch_path(real_dir, sizeof real_dir, "store");
    kt_scratch_path(link_dir, sizeof link_dir, "run");
    cr_assert_eq(mkdir(real_dir, 0755), 0);
    cr_assert_eq(mkdir(link_dir, 0755), 0);
    snprintf(real, sizeof real, "%s/real.safetensors", real_dir);
    snprintf(link, sizeof link, "%s/latest.safetensors", link_dir);
    kt_scratch_path(link2, sizeof link2, "alias.safetensors");
    save_values(real, 1, 2);
    cr_assert_eq(chmod(real, 0600), 0);
    cr_assert_eq(symlink("../store/real.safetensors", link), 0); /* relative to the link's directory */
    cr_assert_eq(symlink(link, link2), 0);                        /* a chain: alias -> latest -> real */
    /* a stale temporary file of the real target, not of the link's name */
    snprintf(p, sizeof p, "%s/real.safetensors.tmp.OLD123", real_dir);
    touch(p, "stale");
    age(p, 3600);

    save_values(link, 3, 4);
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the link was replaced by a file");
    cr_assert_eq(lstat(real, &st), 0);
    cr_expect(S_ISREG(st.st_mode));
    cr_expect_eq(st.st_mode & 07777, 0600, "the target kept its mode (%o)", st.st_mode & 07777);
    expect_values(real, 3, 4);
    cr_expect(!exists(p), "the target's stale temporary file was removed");
    cr_expect_eq(count(real_dir, ".tmp."), 0);
    cr_expect_eq(count(link_dir, ".tmp."), 0, "no temporary file beside the link");

    save_values(link2, 5, 6);
    cr_assert_eq(lstat(link2, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    expect_values(real, 5, 6);
    cr_expect_eq(count(NULL, ".tmp."), 0);

    /* a dangling link: the file it names is created */
    char dangling[200], made[300];
    kt_scratch_path(dangling, sizeof dangling, "next.safetensors");
    cr_assert_eq(symlink("store/made.safetensors", dangling), 0);
    save_values(dangling, 7, 8);
    snprintf(made, sizeof made, "%s/made.safetensors", real_dir);
    cr_assert_eq(lstat(dangling, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    expect_values(made, 7, 8);

    /* a loop of links is an error that creates nothing */
    char a[200], b[200];
    kt_scratch_path(a, sizeof a, "loop_a");
    kt_scratch_path(b, sizeof b, "loop_b");
    cr_assert_eq(symlink("loop_b", a), 0);
    cr_assert_eq(symlink("loop_a", b), 0);
    kiln_named_tensor t[] = {{"w", KT_F32(1, KT_SHAPE(1), {1})}};
    cr_expect_eq(kiln_safetensors_save(a, t, 1, NULL, 0), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "loop_a");
    cr_expect_eq(count(NULL, ".tmp."), 0);
    cr_assert_eq(lstat(a, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    kt_scratch_remove();
}

/* kiln_checkpoint_save goes through the same path. */
KT_TEST(checkpoint_save, checkpoint_save_keeps_mode_and_links_too) {
    char real[200], link[200];
    kt_scratch_path(real, sizeof real, "ck.safetensors");
    kt_scratch_path(link, sizeof link, "ck_link.safetensors");
    kiln_module *m = kiln_linear_create(2, 1, true, KILN_F32);
    cr_assert_eq(kiln_module_finalize(m), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_checkpoint_save(real, m, NULL, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(chmod(real, 0640), 0);
    cr_assert_eq(symlink("ck.safetensors", link), 0);
    cr_assert_eq(kiln_checkpoint_save(link, m, NULL, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    struct stat st;
    cr_assert_eq(lstat(link, &st), 0);
    cr_expect(S_ISLNK(st.st_mode));
    cr_assert_eq(stat(real, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0640);
    cr_expect_eq(kiln_checkpoint_load(link, m, NULL, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_module_free(m);
    kt_scratch_remove();
}
