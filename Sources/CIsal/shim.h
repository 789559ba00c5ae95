#include <stdint.h>
#include <isa-l/igzip_lib.h>

/* The level buffer igzip asks for at `level` (ISAL_DEF_LVLx_DEFAULT): Swift
   cannot import these macros, they are expressions. 0 for level 0 (needs none)
   and for levels igzip does not have. */
static inline uint32_t accord_isal_level_buf_size(uint32_t level) {
    switch (level) {
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    case 3: return ISAL_DEF_LVL3_DEFAULT;
    default: return 0;
    }
}
