// System headers that Glibc's Swift module does not export.
#include <sys/types.h>
#include <sys/xattr.h>
#include <sys/random.h>
#include <malloc.h>
