/* WASI basics: args, env, stdio, clocks, files and directories in /out. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *try_open(const char *path, int flags) {
  int fd = open(path, flags, 0644);
  if (fd >= 0) {
    close(fd);
    return "OPENED";
  }
  return strerror(errno);
}

int main(int argc, char **argv) {
  for (int i = 0; i < argc; i++) printf("arg %d: %s\n", i, argv[i]);
  const char *greeting = getenv("GREETING");
  printf("env GREETING=%s\n", greeting ? greeting : "(unset)");
  fprintf(stderr, "to stderr\n");
  printf("time ok: %d\n", time(NULL) > 1700000000);
  struct timespec nap = {0, 5 * 1000 * 1000};
  printf("nanosleep: %d\n", nanosleep(&nap, NULL));

  FILE *f = fopen("/out/hello.txt", "w");
  if (!f) {
    perror("fopen /out/hello.txt");
    return 10;
  }
  fprintf(f, "written by the guest\n");
  fclose(f);
  char line[64] = {0};
  f = fopen("/out/hello.txt", "r");
  fgets(line, sizeof line, f);
  fseek(f, 0, SEEK_END);
  printf("read back: %s", line);
  printf("size: %ld\n", ftell(f));
  fclose(f);

  printf("mkdir: %d\n", mkdir("/out/sub", 0755));
  printf("rename: %d\n", rename("/out/hello.txt", "/out/sub/renamed.txt"));
  f = fopen("/out/scratch.txt", "w");
  fclose(f);
  printf("unlink: %d\n", unlink("/out/scratch.txt"));
  DIR *dir = opendir("/out/sub");
  struct dirent *entry;
  while (dir && (entry = readdir(dir))) {
    if (entry->d_name[0] != '.') printf("entry: %s\n", entry->d_name);
  }
  if (dir) closedir(dir);
  struct stat st;
  printf("stat size: %d\n", stat("/out/sub/renamed.txt", &st) == 0 ? (int)st.st_size : -1);

  printf("escape dotdot: %s\n", try_open("/out/../escaped.txt", O_WRONLY | O_CREAT));
  printf("escape symlink: %s\n", try_open("/out/link/escaped.txt", O_WRONLY | O_CREAT));
  printf("escape absolute: %s\n", try_open("/etc/passwd", O_RDONLY));
  return 3;
}
