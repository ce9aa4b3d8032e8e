// Work-around for a crash in Debian's iptux 0.8.3 (libiptux-core.so.0.8.3):
// iptux::AnalogFS::mkdir() calls itself instead of ::mkdir() whenever the
// directory does not exist yet -> infinite recursion -> SIGSEGV (stack
// overflow). It is hit by every folder download (RecvFileData::RecvDirFiles),
// i.e. iptux 0.8.3 crashes whenever it accepts a folder.
//
// RecvDirFiles reaches AnalogFS::mkdir through the PLT, so a definition of the
// same symbol in the executable (iptuxd) or in an LD_PRELOADed library (for
// the GTK GUI) takes precedence. Layout (from the disassembly): the object
// starts with `char path[MAX_PATHLEN=1024]`, the current virtual directory.
//
// Build as preload for the GUI:
//   g++ -shared -fPIC -O1 -o libiptux-analogfs-fix.so analogfs_fix.cpp
//   LD_PRELOAD=/path/libiptux-analogfs-fix.so iptux ...
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace iptux {
class AnalogFS {
 public:
  int mkdir(const char* dir, unsigned int mode);
  char path[1024];
};

// same semantics as the static mergepath() in AnalogFS.cpp
static void fix_mergepath(char tpath[1024], const char* npath) {
  if (strcmp(npath, ".") == 0) return;
  if (*npath != '/') {
    if (strcmp(npath, "..") == 0) {
      char* ptr = strrchr(tpath, '/');
      if (ptr != tpath) *ptr = '\0';
    } else {
      size_t len = strlen(tpath);
      snprintf(tpath + len, 1024 - len, "%s%s", tpath[1] != '\0' ? "/" : "", npath);
    }
  } else {
    snprintf(tpath, 1024, "%s", npath);
  }
}

int AnalogFS::mkdir(const char* dir, unsigned int mode) {
  char tpath[1024];
  snprintf(tpath, sizeof tpath, "%s", path);
  fix_mergepath(tpath, dir);
  if (::access(tpath, F_OK) == 0) return 0;
  int r = ::mkdir(tpath, mode);
  if (r != 0) fprintf(stderr, "AnalogFS::mkdir(%s) failed: %s\n", tpath, strerror(errno));
  return r;
}
}  // namespace iptux
