#include "CAccordSys.h"
